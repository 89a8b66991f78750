use envoy_types::pb::envoy::extensions::filters::http::ratelimit::v3::RateLimit;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType;
use prost::Message;
use stagedoor_ratelimit::compile::{compile, CompiledLimits};

use super::rate_limit_global::{cluster, filters, under_any_regex};

fn limits(yaml: &str) -> CompiledLimits {
    compile(&serde_yaml::from_str(yaml).unwrap(), |_| None).unwrap()
}

fn config(filter: &envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter) -> RateLimit {
    let Some(ConfigType::TypedConfig(any)) = &filter.config_type else { panic!("no typed config") };
    RateLimit::decode(any.value.as_slice()).unwrap()
}

#[test]
fn logins_go_to_the_fail_closed_filter_everything_else_to_the_fail_open_one() {
    let l = limits("salt: s\nlimits: [{ name: api, requests: 100, period_ms: 60000 }]");
    let f = filters(Some(&l));
    let names: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["envoy.filters.http.ratelimit.fail_open", "envoy.filters.http.ratelimit.fail_closed"]);
    let (open, closed) = (config(&f[0]), config(&f[1]));
    assert!(!open.failure_mode_deny && closed.failure_mode_deny);
    assert_eq!(closed.status_on_error.map(|s| s.code), Some(503));
    assert_eq!(open.timeout.map(|t| t.nanos), Some(20_000_000), "the issue's default: 20 ms");
    assert_eq!(open.rate_limits.len(), 1);
    assert!(filters(None).is_empty());
}

#[test]
fn the_closed_path_regex_matches_whole_segments() {
    // Anchored, escaped, and the tail starts a new segment, query or fragment; a real Envoy
    // running it is e2e (tests/tests/ratelimit.rs: logins fail closed, venues open).
    let re = under_any_regex(&["/api/v1/auth".into(), "/pay.ments/".into()]);
    assert_eq!(re, r"^(?:/api/v1/auth|/pay\.ments)(?:[/?#].*)?$");
}

#[test]
fn the_limiter_cluster_speaks_h2_over_mutual_tls_and_has_no_endpoint_without_an_address() {
    let c = cluster(Some(&(String::from("127.0.0.1"), 18001)), true);
    assert!(c.typed_extension_protocol_options.contains_key("envoy.extensions.upstreams.http.v3.HttpProtocolOptions"));
    assert!(c.transport_socket.is_some());
    assert_eq!(c.load_assignment.as_ref().map(|l| l.endpoints.len()), Some(1));
    let nowhere = cluster(None, false);
    assert!(nowhere.transport_socket.is_none());
    assert_eq!(nowhere.load_assignment.as_ref().map(|l| l.endpoints.len()), Some(0));
}

#[test]
fn both_pushed_filters_wait_20_ms_when_the_registry_sets_no_timeout() {
    let wait = |yaml: &str| filters(Some(&limits(yaml))).iter().map(|f| config(f).timeout.unwrap()).map(|t| (t.seconds, t.nanos)).collect::<Vec<_>>();
    assert_eq!(wait("salt: s\nlimits: [{ name: api, requests: 100, period_ms: 60000 }]"), [(0, 20_000_000), (0, 20_000_000)]);
    assert_eq!(wait("salt: s\ntimeout_ms: 1000\nlimits: [{ name: api, requests: 100, period_ms: 60000 }]"), [(1, 0), (1, 0)]);
}
