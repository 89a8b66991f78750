//! RDS: one virtual host; `/health` answered by Envoy; each registry route to its cluster,
//! longest prefix first because Envoy takes the first match. A path no route takes gets
//! Envoy's 404, which the local-reply config turns into the JSON error shape.

use envoy_types::pb::envoy::config::core::v3::{data_source, header_value_option, DataSource, HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::config::core::v3::Metadata;
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher, retry_policy, route, route_action, route_match, DirectResponseAction, HeaderMatcher, RetryPolicy,
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, RegexMatcher, StringMatcher};
use envoy_types::pb::google::protobuf::{value, Any, Struct, UInt32Value, Value};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use stagedoor_filter_core::path::is_under_prefix;

use super::cluster::millis;
use super::any::stable_map;
use super::{names, to_any};
use crate::registry::traffic::{LbPolicy, LoadBalancingSpec, RetrySpec, Traffic, FAST_RETRY_BASE_MS, FAST_RETRY_MAX_MS};
use crate::registry::token_endpoint::{LOGOUT_PATH, REFRESH_PATH};
use crate::registry::{Registry, ServiceSpec};

/// One place traffic for a prefix goes, with the policy that applies there.
pub struct Target<'a> {
    pub prefix: String,
    upstream_prefix: Option<String>,
    service: &'a ServiceSpec,
    traffic: Traffic,
    timeout_ms: u64,
    /// A cached route lies under the prefix: its answers may carry `X-Cache: BYPASS`.
    caches: bool,
}

pub fn route_configuration(registry: &Registry, cors: Option<Any>) -> RouteConfiguration {
    let cached = cached_paths(registry);
    let mut targets: Vec<Target<'_>> = registry.services.values().flat_map(|svc| targets(svc, &cached)).collect();
    sort_targets(&mut targets, |t| &t.prefix);
    let mut routes = gateway_routes(registry);
    routes.extend(targets.iter().flat_map(service_routes));
    RouteConfiguration {
        name: names::ROUTE_CONFIG.to_owned(),
        virtual_hosts: vec![VirtualHost { routes, ..virtual_host(cors) }],
        ..Default::default()
    }
}

/// Longest prefix first, because Envoy takes the first match; stable, so equal prefixes
/// keep the services' order.
pub fn sort_targets<T>(targets: &mut [T], prefix: impl Fn(&T) -> &str) {
    targets.sort_by(|a, b| {
        let (a, b) = (prefix(a), prefix(b));
        b.len().cmp(&a.len()).then_with(|| a.cmp(b))
    });
}

/// The places one service's traffic goes: each of its routes, and each per-prefix timeout
/// override under one of them.
///
/// `cached_paths`: the registry's cached paths (`response_cache[].path`); a target with one
/// under its prefix may answer `X-Cache: BYPASS`.
pub fn targets<'a>(svc: &'a ServiceSpec, cached_paths: &[&str]) -> Vec<Target<'a>> {
    let caches_under = |prefix: &str| cached_paths.iter().any(|path| is_under_prefix(path, prefix));
    let mut targets = Vec::new();
    let traffic = svc.traffic.resolve(&svc.name);
    for route in &svc.routes {
        targets.push(Target {
            prefix: route.prefix.clone(),
            upstream_prefix: route.upstream_prefix.clone(),
            service: svc,
            traffic: traffic.clone(),
            timeout_ms: traffic.timeout_ms,
            caches: caches_under(&route.prefix),
        });
        // Per-prefix timeout overrides become more specific routes of their own.
        for rt in traffic.route_timeouts.iter().filter(|rt| is_under_prefix(&rt.prefix, &route.prefix)) {
            targets.push(Target {
                prefix: rt.prefix.clone(),
                upstream_prefix: route.upstream_prefix.as_ref().map(|up| format!("{up}{}", &rt.prefix[route.prefix.len()..])),
                service: svc,
                traffic: traffic.clone(),
                timeout_ms: rt.timeout_ms,
                caches: caches_under(&rt.prefix),
            });
        }
    }
    targets
}

/// The routes ahead of every service's: `/health`, and the token endpoint's (the auth
/// service's prefix covers these paths too).
pub fn gateway_routes(registry: &Registry) -> Vec<Route> {
    let mut routes = vec![health_route()];
    if registry.token_endpoint.is_some() {
        routes.extend([REFRESH_PATH, LOGOUT_PATH].map(token_endpoint_route));
    }
    routes
}

/// The one virtual host, without its routes.
pub fn virtual_host(cors: Option<Any>) -> VirtualHost {
    VirtualHost {
        name: names::VIRTUAL_HOST.to_owned(),
        domains: vec![String::from("*")],
        // Set by Envoy from what it saw, replacing any client copy (the filter removes
        // those too): cheaper here than as host calls from the filter.
        request_headers_to_add: vec![
            overwrite("x-gateway-forwarded", "true"),
            overwrite("x-original-ip", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
        ],
        typed_per_filter_config: stable_map(cors.map(|c| (String::from(names::CORS_FILTER), c))),
        ..Default::default()
    }
}

/// The registry's cached paths (`response_cache[].path`), for [`targets`].
pub fn cached_paths(registry: &Registry) -> Vec<&str> {
    registry.response_cache.iter().map(|cached| cached.path.as_str()).collect()
}

/// `X-Cache: BYPASS` on an answer of a request the filter let go upstream on a cached
/// route's path (it sets the filter state then, see
/// `stagedoor_filter_core::response_cache::BYPASS_FILTER_STATE`). Absent, the value is
/// empty and Envoy adds nothing: an answer from the cache (a local reply, which gets the
/// route's response headers too) carries only the filter's own X-Cache. Only routes with
/// cached paths under them pay for the lookup.
fn x_cache_bypass() -> HeaderValueOption {
    let state = stagedoor_filter_core::response_cache::BYPASS_FILTER_STATE;
    overwrite("x-cache", &format!("%FILTER_STATE(wasm.{state}:PLAIN)%"))
}

/// Methods a retry cannot make happen twice (RFC 9110 9.2.2).
const IDEMPOTENT_METHODS: &str = "GET|HEAD|OPTIONS|PUT|DELETE|TRACE";

/// Three routes per target, first match wins: a request with an Idempotency-Key, an
/// idempotent method, and the rest. Only the first two retry after the request may have
/// reached the upstream (5xx, resets, timeouts); the rest retry only when the connection
/// never opened, so a payment is never sent twice because of a gateway retry.
///
/// Every retry prefers another instance. Envoy waits a route's one back-off before any of
/// its retries, after a refused connection too: the first two routes wait the registry's
/// (fast by default; the original's 1 s one made a dead instance answer 504 after the whole
/// timeout), the last makes one fast retry, since its request never reached an upstream
/// there would be a reason to spare.
pub fn service_routes(target: &Target<'_>) -> Vec<Route> {
    let idempotency_key = HeaderMatcher {
        name: String::from("idempotency-key"),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::PresentMatch(true)),
        ..Default::default()
    };
    let idempotent_method = HeaderMatcher {
        name: String::from(":method"),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(StringMatcher {
            match_pattern: Some(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
                regex: IDEMPOTENT_METHODS.to_owned(),
                ..Default::default()
            })),
            ignore_case: false,
        })),
        ..Default::default()
    };
    vec![
        route(target, "idempotency-key", vec![idempotency_key], true),
        route(target, "idempotent", vec![idempotent_method], true),
        route(target, "other", vec![], false),
    ]
}

fn route(target: &Target<'_>, kind: &str, headers: Vec<HeaderMatcher>, retry_after_send: bool) -> Route {
    let service = target.service.name.as_str();
    Route {
        name: format!("{service}:{}:{kind}", target.prefix),
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::PathSeparatedPrefix(target.prefix.clone())),
            headers,
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(names::cluster(service))),
            prefix_rewrite: target.upstream_prefix.clone().unwrap_or_default(),
            timeout: Some(millis(target.timeout_ms)),
            retry_policy: Some(retry_policy(&target.traffic.retries, retry_after_send)),
            hash_policy: hash_policy(&target.traffic.load_balancing),
            ..Default::default()
        })),
        response_headers_to_add: if target.caches { vec![x_cache_bypass()] } else { Vec::new() },
        // Read by the local-reply formats: "<service> service is down", "... after <N>ms".
        metadata: Some(Metadata {
            filter_metadata: stable_map([(
                String::from(names::METADATA_NAMESPACE),
                Struct {
                    fields: stable_map([
                        (String::from("service"), string_value(service)),
                        (String::from("timeout_ms"), string_value(&target.timeout_ms.to_string())),
                    ]),
                },
            )]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn retry_policy(retries: &RetrySpec, retry_after_send: bool) -> RetryPolicy {
    let (retry_on, attempts, base_ms, max_ms) = if retry_after_send {
        ("5xx,gateway-error,reset,connect-failure,refused-stream", retries.attempts, retries.base_interval_ms, retries.max_interval_ms)
    } else {
        ("connect-failure,refused-stream", retries.attempts.min(1), FAST_RETRY_BASE_MS, FAST_RETRY_MAX_MS)
    };
    RetryPolicy {
        retry_on: retry_on.to_owned(),
        num_retries: Some(UInt32Value { value: attempts }),
        per_try_timeout: retries.per_try_timeout_ms.map(millis),
        retry_back_off: Some(retry_policy::RetryBackOff {
            base_interval: Some(millis(base_ms)),
            max_interval: Some(millis(max_ms)),
        }),
        retry_host_predicate: vec![retry_policy::RetryHostPredicate {
            name: String::from("envoy.retry_host_predicates.previous_hosts"),
            config_type: Some(retry_policy::retry_host_predicate::ConfigType::TypedConfig(to_any(
                &PreviousHostsPredicate::default(),
            ))),
        }],
        // Picks that land on an instance already tried are redrawn this often, then taken
        // (a service with one instance retries it).
        host_selection_retry_max_attempts: 3,
        ..Default::default()
    }
}

fn string_value(s: &str) -> Value {
    Value { kind: Some(value::Kind::StringValue(s.to_owned())) }
}

fn hash_policy(lb: &LoadBalancingSpec) -> Vec<route_action::HashPolicy> {
    use route_action::hash_policy::{Cookie, Header, PolicySpecifier};
    if !matches!(lb.policy, LbPolicy::RingHash | LbPolicy::Maglev) {
        return Vec::new();
    }
    let header = lb.hash_header.as_ref().map(|h| PolicySpecifier::Header(Header { header_name: h.clone(), ..Default::default() }));
    let cookie = lb.hash_cookie.as_ref().map(|c| PolicySpecifier::Cookie(Cookie { name: c.clone(), ..Default::default() }));
    header
        .into_iter()
        .chain(cookie)
        .map(|p| route_action::HashPolicy { policy_specifier: Some(p), ..Default::default() })
        .collect()
}

/// Refresh or logout (and what is under them, as the filter reads it) to the token
/// endpoint; no retries: a refresh is not idempotent for a reason the gateway can see.
fn token_endpoint_route(path: &str) -> Route {
    Route {
        name: format!("gateway:{path}"),
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::PathSeparatedPrefix(path.to_owned())),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(names::TOKEN_ENDPOINT_CLUSTER.to_owned())),
            timeout: Some(millis(TOKEN_ENDPOINT_TIMEOUT_MS)),
            ..Default::default()
        })),
        metadata: Some(Metadata {
            filter_metadata: stable_map([(
                String::from(names::METADATA_NAMESPACE),
                Struct {
                    fields: stable_map([
                        (String::from("service"), string_value("token endpoint")),
                        (String::from("timeout_ms"), string_value(&TOKEN_ENDPOINT_TIMEOUT_MS.to_string())),
                    ]),
                },
            )]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The token endpoint answers from Redis in milliseconds; its own Redis timeout is 2 s.
const TOKEN_ENDPOINT_TIMEOUT_MS: u64 = 5_000;

fn health_route() -> Route {
    Route {
        name: String::from("gateway:/health"),
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Path(String::from("/health"))),
            ..Default::default()
        }),
        action: Some(route::Action::DirectResponse(DirectResponseAction {
            status: 200,
            body: Some(DataSource {
                specifier: Some(data_source::Specifier::InlineString(String::from(
                    r#"{"status":"ok","service":"stagedoor"}"#,
                ))),
                ..Default::default()
            }),
            ..Default::default()
        })),
        response_headers_to_add: vec![json_content_type()],
        ..Default::default()
    }
}

pub fn json_content_type() -> HeaderValueOption {
    overwrite("content-type", "application/json")
}

fn overwrite(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue { key: key.to_owned(), value: value.to_owned(), ..Default::default() }),
        append_action: header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}
