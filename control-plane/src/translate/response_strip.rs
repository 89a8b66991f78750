//! The response header_mutation that strips internal headers from upstream responses,
//! natively: cheaper than reading every response's headers into the wasm VM.
//!
//! One `remove_on_match` entry whose regex names the whole list, not one `remove` per name:
//! Envoy runs a `remove` as a scan of the header map each, so the original 17 entries (the
//! `x-internal-` prefix and 16 names) cost about 7,000 instructions per response over one
//! entry (bench/README.md, deployed_cost.py); one regex costs one RE2 match per response
//! header. The names are the filter core's, so the list cannot drift from what the filter
//! strips in requests.

use envoy_types::pb::envoy::config::common::mutation_rules::v3::{header_mutation, HeaderMutation as Mutation};
use envoy_types::pb::envoy::extensions::filters::http::header_mutation::v3::{HeaderMutation, Mutations};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{http_filter, HttpFilter};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, RegexMatcher, StringMatcher};
use stagedoor_filter_core::headers::{response_removed_headers, RESPONSE_REMOVED_PREFIX};

use super::to_any;

pub fn response_header_filter() -> HttpFilter {
    let remove_listed = Mutation {
        action: Some(header_mutation::Action::RemoveOnMatch(header_mutation::RemoveOnMatch {
            key_matcher: Some(StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
                    regex: removed_names_regex(),
                    ..Default::default()
                })),
                // Envoy hands header names to filters lower-cased (HTTP/1 codec and HTTP/2
                // alike), and the lists are lower case: no case folding needed.
                ignore_case: false,
            }),
        })),
    };
    let config = HeaderMutation {
        mutations: Some(Mutations { response_mutations: vec![remove_listed], ..Default::default() }),
        ..Default::default()
    };
    HttpFilter {
        name: String::from("envoy.filters.http.header_mutation"),
        config_type: Some(http_filter::ConfigType::TypedConfig(to_any(&config))),
        ..Default::default()
    }
}

/// `x-internal-.*|name|name|...` (names the prefix covers left out): RE2 matches a
/// `safe_regex` against the whole name. Header names are letters, digits and `-`, none of
/// which needs escaping outside a class. Its RE2 program is larger than Envoy's default
/// limit of 100: envoy/bootstrap.yaml raises `re2.max_program_size.error_level`.
pub fn removed_names_regex() -> String {
    std::iter::once(format!("{RESPONSE_REMOVED_PREFIX}.*"))
        .chain(response_removed_headers().filter(|name| !name.starts_with(RESPONSE_REMOVED_PREFIX)).map(str::to_owned))
        .collect::<Vec<_>>()
        .join("|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use stagedoor_filter_core::defaults::{ALLOWED_HEADERS, BLOCKED_HEADERS, IDENTITY_HEADERS};
    use stagedoor_filter_core::headers::removes_response_header;

    fn whole_match(name: &str) -> bool {
        let re = regex::Regex::new(&format!("^(?:{})$", removed_names_regex())).unwrap();
        re.is_match(name)
    }

    #[test]
    fn the_regex_removes_exactly_what_the_filter_core_removes_from_responses() {
        let samples = BLOCKED_HEADERS
            .iter()
            .chain(ALLOWED_HEADERS)
            .chain(IDENTITY_HEADERS)
            .copied()
            .chain(["x-internal-", "x-internal-secret", "x-internal-debug", "x-echo-marker", "content-type", "server",
                "x-request-id", "x-internal", "x-real-ip-extra", "my-x-real-ip", "x-admin-tokens", "www-authenticate"]);
        for name in samples {
            assert_eq!(whole_match(name), removes_response_header(name), "{name}");
        }
    }

    #[test]
    fn every_listed_name_and_the_prefix_are_in_the_one_entry() {
        let re = removed_names_regex();
        assert!(re.starts_with("x-internal-.*|"), "{re}");
        for name in response_removed_headers() {
            assert!(whole_match(name), "{name} in {re}");
        }
        assert!(!re.contains("x-internal-service"), "covered by the prefix: {re}");
        assert!(!whole_match("www-authenticate"), "the gateway's own 401s carry it");
    }

    proptest::proptest! {
        #[test]
        fn regex_and_core_agree_on_any_header_name(name in "(x-|x-internal-|proxy-)?[a-z0-9-]{0,20}") {
            proptest::prop_assert_eq!(whole_match(&name), removes_response_header(&name));
        }
    }
}
