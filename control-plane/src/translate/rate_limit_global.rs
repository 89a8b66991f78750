//! Global rate limiting (issue 13): Envoy's HTTP ratelimit filter asking the control plane's
//! RateLimitService, which counts in Redis for the whole fleet.
//!
//! Two filters, because Envoy's failure mode is per filter, not per route: requests under a
//! fail-closed prefix (logins and refreshes by default) go to the one that answers 503 when
//! the limiter cannot be reached or times out; every other request goes to the one that lets
//! it through (the local rate limit in front still bounds a flood per Envoy). Each request
//! makes one call: the path match puts its descriptor in exactly one of the two filters.
//! Both run after the Stagedoor filter, so the identity headers they send are the verified
//! ones it set (it removes client copies first).

use envoy_types::pb::envoy::config::core::v3::{grpc_service, ApiVersion, GrpcService, HttpProtocolOptions as CoreHttpProtocolOptions};
use envoy_types::pb::envoy::config::cluster::v3::{cluster::ClusterDiscoveryType, cluster::DiscoveryType, Cluster};
use envoy_types::pb::envoy::config::core::v3::Http2ProtocolOptions;
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, LocalityLbEndpoints};
use envoy_types::pb::envoy::config::ratelimit::v3::RateLimitServiceConfig;
use envoy_types::pb::envoy::config::route::v3::rate_limit::{action, Action};
use envoy_types::pb::envoy::config::route::v3::{header_matcher, HeaderMatcher, RateLimit as RouteRateLimit};
use envoy_types::pb::envoy::extensions::filters::http::ratelimit::v3::RateLimit;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{http_filter, HttpFilter};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{http_protocol_options, HttpProtocolOptions};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, RegexMatcher, StringMatcher};
use envoy_types::pb::envoy::r#type::v3::{HttpStatus, StatusCode};
use envoy_types::pb::google::protobuf::BoolValue;
use stagedoor_ratelimit::compile::CompiledLimits;
use stagedoor_ratelimit::plan::{closed_prefixes, PATH, REMOTE_ADDRESS, ROLE, TENANT, USER};

use super::any::{stable_map, to_any};
use super::cluster::millis;
use crate::registry::InstanceSpec;

pub const CLUSTER: &str = "stagedoor_ratelimit";
/// The domain Envoy sends; the service answers only this one.
pub const DOMAIN: &str = "stagedoor";

/// The two filters, in order; none when the registry has no global limits.
pub fn filters(limits: Option<&CompiledLimits>) -> Vec<HttpFilter> {
    let Some(limits) = limits else { return Vec::new() };
    let closed = closed_prefixes(limits);
    let open_everywhere = closed.is_empty();
    let closed_everywhere = closed.iter().any(|p| p == "/");
    let mut filters = Vec::new();
    if !closed_everywhere {
        filters.push(filter("envoy.filters.http.ratelimit.fail_open", limits, false, descriptor(&closed, false)));
    }
    if !open_everywhere {
        filters.push(filter("envoy.filters.http.ratelimit.fail_closed", limits, true, descriptor(&closed, true)));
    }
    filters
}

fn filter(name: &str, limits: &CompiledLimits, fail_closed: bool, rate_limit: RouteRateLimit) -> HttpFilter {
    let config = RateLimit {
        domain: DOMAIN.to_owned(),
        // Bounds what the limiter can add to a request (default 20 ms).
        timeout: Some(millis(limits.timeout_ms)),
        failure_mode_deny: fail_closed,
        status_on_error: fail_closed.then_some(HttpStatus { code: StatusCode::ServiceUnavailable as i32 }),
        rate_limit_service: Some(RateLimitServiceConfig {
            grpc_service: Some(GrpcService {
                target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(grpc_service::EnvoyGrpc {
                    cluster_name: CLUSTER.to_owned(),
                    ..Default::default()
                })),
                ..Default::default()
            }),
            transport_api_version: ApiVersion::V3 as i32,
        }),
        // The service writes X-RateLimit-* and Retry-After itself (whole numbers, as the
        // original's clients read them); Envoy's draft-03 headers would be a second set.
        disable_x_envoy_ratelimited_header: true,
        stat_prefix: if fail_closed { String::from("stagedoor_fail_closed") } else { String::from("stagedoor_fail_open") },
        rate_limits: vec![rate_limit],
        ..Default::default()
    };
    HttpFilter { name: name.to_owned(), config_type: Some(http_filter::ConfigType::TypedConfig(to_any(&config))), ..Default::default() }
}

/// One descriptor per request: produced only when the path is (fail closed) or is not (fail
/// open) under a closed prefix; then the path, the client address and the verified identity.
fn descriptor(closed: &[String], fail_closed: bool) -> RouteRateLimit {
    let header = |header: &str, key: &str, skip_if_absent: bool| Action {
        action_specifier: Some(action::ActionSpecifier::RequestHeaders(action::RequestHeaders {
            header_name: header.to_owned(),
            descriptor_key: key.to_owned(),
            skip_if_absent,
        })),
    };
    let mut actions = Vec::new();
    if !closed.is_empty() {
        actions.push(Action {
            action_specifier: Some(action::ActionSpecifier::HeaderValueMatch(action::HeaderValueMatch {
                descriptor_key: String::from("fail_mode"),
                descriptor_value: String::from(if fail_closed { "closed" } else { "open" }),
                expect_match: Some(BoolValue { value: fail_closed }),
                headers: vec![HeaderMatcher {
                    name: String::from(":path"),
                    header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(StringMatcher {
                        match_pattern: Some(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
                            regex: under_any_regex(closed),
                            ..Default::default()
                        })),
                        ignore_case: false,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            })),
        });
    }
    actions.extend([
        header(":path", PATH, false),
        Action { action_specifier: Some(action::ActionSpecifier::RemoteAddress(action::RemoteAddress {})) },
        header("x-user-id", USER, true),
        header("x-tenant-id", TENANT, true),
        header("x-user-role", ROLE, true),
    ]);
    debug_assert_eq!(REMOTE_ADDRESS, "remote_address", "Envoy's fixed key for the remote_address action");
    RouteRateLimit { actions, ..Default::default() }
}

/// A path under any of `prefixes`, segment-wise (as `plan::path_under`), query allowed.
pub fn under_any_regex(prefixes: &[String]) -> String {
    let alternatives: Vec<String> = prefixes.iter().map(|p| regex_escape(p.trim_end_matches('/'))).collect();
    format!("^(?:{})(?:[/?#].*)?$", alternatives.join("|"))
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !c.is_ascii_alphanumeric() && c != '/' && c != '_' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The control plane's RateLimitService: HTTP/2 (gRPC), over the same mutual TLS as the
/// revocation feed unless `--insecure`. `None`: no `--ratelimit` address, so no endpoint, and
/// every request takes its route's Envoy-side failure mode.
pub fn cluster(service: Option<&(String, u16)>, tls: bool) -> Cluster {
    let kind = match service {
        Some((host, _)) if host.parse::<std::net::IpAddr>().is_err() => DiscoveryType::StrictDns,
        _ => DiscoveryType::Static,
    };
    let h2 = HttpProtocolOptions {
        upstream_protocol_options: Some(http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
            http_protocol_options::ExplicitHttpConfig {
                protocol_config: Some(http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                    Http2ProtocolOptions::default(),
                )),
            },
        )),
        common_http_protocol_options: Some(CoreHttpProtocolOptions::default()),
        ..Default::default()
    };
    Cluster {
        name: CLUSTER.to_owned(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(kind as i32)),
        connect_timeout: Some(millis(1000)),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: CLUSTER.to_owned(),
            endpoints: service
                .map(|(host, port)| LocalityLbEndpoints {
                    lb_endpoints: vec![super::cluster::lb_endpoint(&InstanceSpec { address: host.clone(), port: *port })],
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        }),
        typed_extension_protocol_options: stable_map([(
            String::from("envoy.extensions.upstreams.http.v3.HttpProtocolOptions"),
            to_any(&h2),
        )]),
        transport_socket: tls.then(super::control_plane_tls::transport_socket),
        ..Default::default()
    }
}
