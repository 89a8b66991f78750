//! CORS as the original's middleware did it, by Envoy's CORS filter: preflights are answered
//! at the edge (before authentication), a disallowed origin gets no CORS headers.

use envoy_types::pb::envoy::extensions::filters::http::cors::v3::{Cors, CorsPolicy};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{http_filter, HttpFilter};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use envoy_types::pb::google::protobuf::{Any, BoolValue};

use super::{names, to_any};
use crate::registry::CorsSpec;

/// The filter, placed before Stagedoor's so a preflight never needs a token.
pub fn filter() -> HttpFilter {
    HttpFilter {
        name: names::CORS_FILTER.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(to_any(&Cors::default()))),
        ..Default::default()
    }
}

/// The policy, set on the virtual host.
pub fn policy(spec: &CorsSpec) -> Any {
    to_any(&CorsPolicy {
        allow_origin_string_match: spec
            .allowed_origins
            .iter()
            .map(|origin| StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Exact(origin.clone())),
                ignore_case: true,
            })
            .collect(),
        allow_methods: spec.allowed_methods.join(","),
        allow_headers: spec.allowed_headers.join(","),
        expose_headers: spec.exposed_headers.join(","),
        max_age: spec.max_age_secs.to_string(),
        allow_credentials: Some(BoolValue { value: spec.allow_credentials }),
        // A preflight from an origin not on the list is answered here too, without CORS
        // headers, rather than passed on to a service.
        forward_not_matching_preflights: Some(BoolValue { value: false }),
        ..Default::default()
    })
}
