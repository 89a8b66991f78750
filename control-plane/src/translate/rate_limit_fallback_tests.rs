use envoy_types::pb::envoy::config::route::v3::rate_limit::action::ActionSpecifier;
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType;
use prost::Message;
use stagedoor_ratelimit::compile::{compile, CompiledLimits};

use super::rate_limit_fallback::{filter, FILTER_NAME};

fn limits(yaml: &str) -> CompiledLimits {
    compile(&serde_yaml::from_str(yaml).unwrap(), |_| None).unwrap()
}

fn config(yaml: &str) -> Option<LocalRateLimit> {
    let f = filter(Some(&limits(yaml)))?;
    assert_eq!(f.name, FILTER_NAME);
    let Some(ConfigType::TypedConfig(any)) = &f.config_type else { panic!("no typed config") };
    Some(LocalRateLimit::decode(any.value.as_slice()).unwrap())
}

fn entries(config: &LocalRateLimit) -> Vec<String> {
    config
        .descriptors
        .iter()
        .map(|d| d.entries.iter().map(|e| format!("{}={}", e.key, e.value)).collect::<Vec<_>>().join(","))
        .collect()
}

#[test]
fn a_local_fallback_limit_gets_per_user_and_per_address_buckets_at_its_own_rate() {
    let c = config("salt: s\nlocal_fallback_keys: 500\nlimits: [{ name: api, requests: 10, period_ms: 6000, burst: 4, routes: [/api/v1/venues] }]").unwrap();
    assert_eq!(entries(&c), ["limit=api,user=,tenant=", "limit=api,user=", "limit=api,anonymous=true,remote_address="]);
    for d in &c.descriptors {
        let b = d.token_bucket.unwrap();
        // Burst at once, then requests per period: GCRA's figures.
        assert_eq!((b.max_tokens, b.tokens_per_fill.unwrap().value), (4, 10));
        assert_eq!(b.fill_interval.unwrap().seconds, 6);
    }
    assert_eq!(c.max_dynamic_descriptors.unwrap().value, 500);
    // The service's X-RateLimit-* are the reply's headers; this filter's only on its 429.
    assert_eq!(c.enable_x_ratelimit_headers, 0);
    let added: Vec<(String, String)> = c.response_headers_to_add.iter().map(|h| h.header.clone().unwrap()).map(|h| (h.key, h.value)).collect();
    assert!(added.contains(&(String::from("retry-after"), String::from("1"))), "600 ms emission: {added:?}");
    // The path decides which limit a request is counted under.
    let ActionSpecifier::HeaderValueMatch(m) = c.rate_limits[0].actions[0].action_specifier.clone().unwrap() else { panic!() };
    assert_eq!((m.descriptor_key.as_str(), m.descriptor_value.as_str()), ("limit", "api"));
}

#[test]
fn open_closed_and_shadow_limits_have_no_local_fallback() {
    assert!(config("salt: s\nlimits: [{ name: a, requests: 1, period_ms: 1000, fail_mode: open }, { name: b, requests: 1, period_ms: 1000, fail_mode: closed }, { name: c, requests: 1, period_ms: 1000, shadow: true }]").is_none());
    assert!(filter(None).is_none());
    // Explicit local_fallback, and the default (also on all routes).
    let c = config("salt: s\nlimits: [{ name: a, requests: 1, period_ms: 1000, fail_mode: local_fallback, per: user }, { name: b, requests: 1, period_ms: 1000, per: address }]").unwrap();
    assert_eq!(entries(&c), ["limit=a,user=,tenant=", "limit=a,user=", "limit=b,anonymous=true,remote_address="]);
}

#[test]
fn role_overrides_get_their_own_buckets_and_unlimited_roles_none() {
    let c = config("salt: s\nunlimited_roles: [root]\nlimits: [{ name: api, requests: 3, period_ms: 60000, roles: { admin: { unlimited: true }, manager: { requests: 5 } } }]").unwrap();
    assert_eq!(
        entries(&c),
        ["limit=api,role=manager,user=,tenant=", "limit=api,role=manager,user=", "limit=api,role=other,user=,tenant=", "limit=api,role=other,user=", "limit=api,role=other,anonymous=true,remote_address="]
    );
    let burst = |i: usize| c.descriptors[i].token_bucket.unwrap().max_tokens;
    assert_eq!((burst(0), burst(2)), (5, 3));
    // "other" is every role but the override and the unlimited ones.
    let ActionSpecifier::HeaderValueMatch(m) = c.rate_limits[1].actions[1].action_specifier.clone().unwrap() else { panic!() };
    assert!(!m.expect_match.unwrap().value, "role=other when the role is none of them");
    let matcher = format!("{:?}", m.headers[0].header_match_specifier);
    assert!(matcher.contains(r"^(?:admin|manager|root)$"), "{matcher}");
}
