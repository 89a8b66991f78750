use std::net::SocketAddr;

use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint;
use envoy_types::pb::envoy::config::listener::v3::filter;
use envoy_types::pb::envoy::config::route::v3::{route, route_action, route_match};
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager,
};
use envoy_types::pb::google::protobuf::StringValue;
use prost::Message;
use stagedoor_filter_core::config::FilterConfig;

use super::*;

fn translate_static(registry: &Registry, options: &TranslateOptions) -> Result<Resources, TranslateError> {
    translate(registry, &crate::registry::LiveInstances::new(), &[], options)
}

const SERVICES: &str = r#"
services:
  - name: venue
    routes: [{ prefix: /api/v1/venues }]
    instances: [{ address: 127.0.0.1, port: 3002 }, { address: 127.0.0.2, port: 3002 }]
  - name: venue-admin
    routes: [{ prefix: /api/v1/venues/admin }]
  - name: payment
    routes:
      - { prefix: /api/v1/payments }
      - { prefix: /webhooks, upstream_prefix: /api/v1/webhooks }
    public_paths: ["/webhooks/*"]
"#;

fn options() -> TranslateOptions {
    TranslateOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        wasm_path: "/x/f.wasm".into(),
        hmac_wasm_path: None,
        control_plane_http: Some((String::from("127.0.0.1"), 18080)),
        control_plane_tls: true,
        rate_limit_service: None,
        limits: crate::registry::limits::Limits::default(),
    }
}

#[test]
fn the_control_plane_cluster_speaks_mutual_tls_with_the_bootstraps_secrets_unless_insecure() {
    use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
    let registry = Registry::parse("test", &crate::test_support::registry_yaml(SERVICES)).unwrap();
    let find = |options: &TranslateOptions| {
        let resources = translate_static(&registry, options).unwrap();
        resources.clusters.into_iter().find(|c| c.name == names::CONTROL_PLANE_CLUSTER).unwrap()
    };
    let socket = find(&options()).transport_socket.expect("a TLS transport socket");
    let Some(ConfigType::TypedConfig(any)) = socket.config_type else { panic!("typed config") };
    let tls = UpstreamTlsContext::decode(any.value.as_slice()).unwrap();
    let common = tls.common_tls_context.unwrap();
    assert_eq!(common.tls_certificate_sds_secret_configs[0].name, names::ENVOY_IDENTITY_SECRET);
    let text = format!("{:?}", common.validation_context_type);
    assert!(text.contains(names::CA_SECRET) && text.contains(crate::tls::identity::CONTROL_PLANE_URI), "{text}");
    let insecure = TranslateOptions { control_plane_tls: false, ..options() };
    assert!(find(&insecure).transport_socket.is_none());
}

fn resources() -> Resources {
    translate_static(&Registry::parse("r", &crate::test_support::registry_yaml(SERVICES)).unwrap(), &options()).unwrap()
}

fn hcm(resources: &Resources) -> HttpConnectionManager {
    let Some(filter::ConfigType::TypedConfig(any)) = &resources.listeners[0].filter_chains[0].filters[0].config_type
    else {
        panic!("no typed config")
    };
    HttpConnectionManager::decode(any.value.as_slice()).unwrap()
}

/// The wasm plugin of the Stagedoor filter, from its ECDS resource.
fn plugin(resources: &Resources) -> envoy_types::pb::envoy::extensions::wasm::v3::PluginConfig {
    assert_eq!(resources.extension_configs.len(), 1);
    let typed = resources.extension_configs[0].typed_config.as_ref().unwrap();
    assert_eq!(typed.type_url, "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm");
    Wasm::decode(typed.value.as_slice()).unwrap().config.unwrap()
}

#[test]
fn one_eds_cluster_and_one_load_assignment_per_service() {
    let r = resources();
    let clusters: Vec<_> = r.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(clusters, ["svc_payment", "svc_venue", "svc_venue-admin", "stagedoor_control_plane"]);
    let venue = r.endpoints.iter().find(|e| e.cluster_name == "svc_venue").unwrap();
    let ports: Vec<_> = venue.endpoints[0]
        .lb_endpoints
        .iter()
        .map(|e| match &e.host_identifier {
            Some(lb_endpoint::HostIdentifier::Endpoint(ep)) => match &ep.address.as_ref().unwrap().address {
                Some(address::Address::SocketAddress(sa)) => {
                    (sa.address.clone(), sa.port_specifier.clone().unwrap())
                }
                _ => panic!(),
            },
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("127.0.0.1".to_owned(), socket_address::PortSpecifier::PortValue(3002)),
            ("127.0.0.2".to_owned(), socket_address::PortSpecifier::PortValue(3002)),
        ]
    );
    crate::snapshot::check_consistent(&r).unwrap();
}

#[test]
fn routes_are_longest_prefix_first_after_health_on_whole_segments() {
    let r = resources();
    let routes = &r.routes[0].virtual_hosts[0].routes;
    let matches: Vec<_> = routes
        .iter()
        .map(|rt| match &rt.r#match.as_ref().unwrap().path_specifier {
            Some(route_match::PathSpecifier::Path(p)) => format!("={p}"),
            Some(route_match::PathSpecifier::PathSeparatedPrefix(p)) => p.clone(),
            other => panic!("unexpected matcher {other:?}"),
        })
        .collect();
    let mut distinct = matches.clone();
    distinct.dedup();
    assert_eq!(distinct, ["=/health", "/api/v1/venues/admin", "/api/v1/payments", "/api/v1/venues", "/webhooks"]);
    assert_eq!(matches.len(), 1 + 4 * 3, "three routes per prefix (retry classes)");
    let webhook = routes.last().unwrap();
    let Some(route::Action::Route(action)) = &webhook.action else { panic!() };
    assert_eq!(action.prefix_rewrite, "/api/v1/webhooks");
    assert_eq!(action.cluster_specifier, Some(route_action::ClusterSpecifier::Cluster("svc_payment".into())));
    assert!(matches!(routes[0].action, Some(route::Action::DirectResponse(_))));
}

#[test]
fn the_connection_manager_normalizes_paths_and_drops_underscore_headers() {
    let hcm = hcm(&resources());
    assert_eq!(hcm.normalize_path.map(|b| b.value), Some(true));
    assert!(hcm.merge_slashes);
    assert_eq!(
        hcm.path_with_escaped_slashes_action,
        http_connection_manager::PathWithEscapedSlashesAction::RejectRequest as i32
    );
    assert_eq!(hcm.common_http_protocol_options.unwrap().headers_with_underscores_action, 2 /* DROP_HEADER */);
    assert_eq!(hcm.use_remote_address.map(|b| b.value), Some(true));
    assert!(hcm.always_set_request_id_in_response);
    let filters: Vec<_> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        filters,
        ["stagedoor", "envoy.filters.http.header_mutation", "envoy.filters.http.router"],
        "auth runs before routing; internal response headers are stripped natively"
    );
}

#[test]
fn the_filter_gets_the_shared_config_type_for_every_service() {
    let plugin = plugin(&resources());
    assert_eq!(
        plugin.failure_policy,
        envoy_types::pb::envoy::extensions::wasm::v3::FailurePolicy::FailReload as i32,
        "a VM failure costs one request, not the worker"
    );
    let json = StringValue::decode(plugin.configuration.unwrap().value.as_slice()).unwrap().value;
    let config = FilterConfig::from_json(json.as_bytes()).unwrap();
    let names: Vec<_> = config.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["payment", "venue", "venue-admin"]);
    assert_eq!(config.services[0].public_paths, ["/webhooks/*"]);
    assert_eq!(config.services[0].prefixes, ["/api/v1/payments", "/webhooks"]);
    stagedoor_filter_core::Policy::compile(&config).unwrap();
}

#[test]
fn the_listener_names_the_filter_config_which_comes_over_ecds_without_a_default() {
    let hcm = hcm(&resources());
    let Some(http_filter::ConfigType::ConfigDiscovery(source)) = &hcm.http_filters[0].config_type else {
        panic!("the Stagedoor filter is given by config_discovery")
    };
    assert_eq!(hcm.http_filters[0].name, resources().extension_configs[0].name, "Envoy subscribes by the filter's name");
    assert!(source.default_config.is_none() && !source.apply_default_config_without_warming, "never serve without the filter");
    assert_eq!(source.type_urls, ["type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"]);
    assert!(matches!(
        source.config_source.as_ref().and_then(|c| c.config_source_specifier.as_ref()),
        Some(envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier::Ads(_))
    ));
}

#[test]
fn a_policy_edit_changes_the_filter_config_and_not_the_listener() {
    let before = resources();
    let edited = SERVICES.replace(r#"public_paths: ["/webhooks/*"]"#, r#"public_paths: ["/webhooks/*", "/api/v1/payments/status"]"#);
    let after = translate_static(&Registry::parse("r", &crate::test_support::registry_yaml(&edited)).unwrap(), &options()).unwrap();
    assert_ne!(before.extension_configs, after.extension_configs);
    assert_eq!(before.listeners, after.listeners, "the listener holds no policy");
}

#[test]
fn translation_is_deterministic() {
    assert_eq!(resources(), resources());
}

#[test]
fn the_filter_polls_revocations_through_the_control_plane_cluster() {
    let plugin = plugin(&resources());
    let json = StringValue::decode(plugin.configuration.unwrap().value.as_slice()).unwrap().value;
    let revocation = FilterConfig::from_json(json.as_bytes()).unwrap().revocation.unwrap();
    assert_eq!(revocation.cluster, "stagedoor_control_plane");
    assert_eq!(revocation.path, "/v1/revocations");
}

#[test]
fn gateway_headers_are_set_by_envoy_from_what_it_saw() {
    let r = resources();
    let added: Vec<_> = r.routes[0].virtual_hosts[0]
        .request_headers_to_add
        .iter()
        .map(|h| {
            let hv = h.header.as_ref().unwrap();
            (hv.key.as_str(), hv.value.as_str(), h.append_action)
        })
        .collect();
    assert_eq!(
        added,
        [
            ("x-gateway-forwarded", "true", 2),
            ("x-original-ip", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", 2),
        ],
        "overwrite any client copy"
    );
}

fn route_named<'a>(r: &'a Resources, name: &str) -> &'a envoy_types::pb::envoy::config::route::v3::Route {
    r.routes[0].virtual_hosts[0].routes.iter().find(|rt| rt.name == name).unwrap_or_else(|| panic!("no route {name}"))
}

fn action(route: &envoy_types::pb::envoy::config::route::v3::Route) -> &envoy_types::pb::envoy::config::route::v3::RouteAction {
    match &route.action {
        Some(route::Action::Route(a)) => a,
        _ => panic!("not a proxied route"),
    }
}

#[test]
fn only_idempotent_requests_are_retried_after_they_may_have_reached_the_upstream() {
    let r = resources();
    let keyed = route_named(&r, "payment:/api/v1/payments:idempotency-key");
    assert_eq!(keyed.r#match.as_ref().unwrap().headers[0].name, "idempotency-key");
    let idempotent = route_named(&r, "payment:/api/v1/payments:idempotent");
    assert_eq!(idempotent.r#match.as_ref().unwrap().headers[0].name, ":method");
    let other = route_named(&r, "payment:/api/v1/payments:other");
    assert!(other.r#match.as_ref().unwrap().headers.is_empty(), "the fallback takes everything else");
    let back_off_ms = |retry: &envoy_types::pb::envoy::config::route::v3::RetryPolicy| {
        let b = retry.retry_back_off.as_ref().unwrap();
        let ms = |d: &envoy_types::pb::google::protobuf::Duration| d.seconds * 1000 + i64::from(d.nanos / 1_000_000);
        (ms(b.base_interval.as_ref().unwrap()), ms(b.max_interval.as_ref().unwrap()))
    };
    for route in [keyed, idempotent] {
        let retry = action(route).retry_policy.as_ref().unwrap();
        assert!(retry.retry_on.contains("5xx") && retry.retry_on.contains("reset"));
        // The original's payment retry count, with Envoy's fast back-off (its 2 s one made
        // a refused connection wait too).
        assert_eq!(retry.num_retries.as_ref().unwrap().value, 3);
        assert_eq!(back_off_ms(retry), (25, 250));
    }
    let retry = action(other).retry_policy.as_ref().unwrap();
    assert_eq!(retry.retry_on, "connect-failure,refused-stream", "a POST is retried only if it never left");
    assert_eq!(retry.num_retries.as_ref().unwrap().value, 1, "and then once");
    assert_eq!(back_off_ms(retry), (25, 250));
    assert_eq!(action(other).timeout.as_ref().unwrap().seconds, 30, "the original's payment timeout");
    for route in [keyed, idempotent, other] {
        let retry = action(route).retry_policy.as_ref().unwrap();
        assert_eq!(retry.retry_host_predicate[0].name, "envoy.retry_host_predicates.previous_hosts", "another instance first");
    }
    let venue = route_named(&r, "venue:/api/v1/venues:other");
    assert_eq!(action(venue).timeout.as_ref().unwrap().seconds, 5, "the original's proxy default");
}

const TRAFFIC: &str = r#"
services:
  - name: minting
    routes: [{ prefix: /api/v1/minting, upstream_prefix: /mint-api }]
    traffic:
      timeout_ms: 10000
      route_timeouts: [{ prefix: /api/v1/minting/mint, timeout_ms: 120000 }]
      retries: { attempts: 2, base_interval_ms: 100, max_interval_ms: 1000, per_try_timeout_ms: 3000 }
      circuit_breaker: { error_threshold_percentage: 40, volume_threshold: 20, reset_timeout_ms: 15000, max_connections: 10 }
      load_balancing: { policy: ring_hash, hash_header: x-user-id }
      health_check: { path: /healthz, interval_ms: 5000 }
  - name: search
    routes: [{ prefix: /api/v1/search }]
    traffic:
      load_balancing: { policy: least_request }
      health_check: { enabled: false }
cors:
  allowed_origins: [https://app.tickettoken.com]
  allow_credentials: true
rate_limit: { requests: 100, window_ms: 60000 }
"#;

fn traffic_resources() -> Resources {
    translate_static(&Registry::parse("r", &crate::test_support::registry_yaml(TRAFFIC)).unwrap(), &options()).unwrap()
}

#[test]
fn route_timeouts_become_more_specific_routes_with_the_rewrite_carried_over() {
    let r = traffic_resources();
    let mint = route_named(&r, "minting:/api/v1/minting/mint:other");
    assert_eq!(action(mint).timeout.as_ref().unwrap().seconds, 120);
    assert_eq!(action(mint).prefix_rewrite, "/mint-api/mint");
    let rest = route_named(&r, "minting:/api/v1/minting:other");
    assert_eq!(action(rest).timeout.as_ref().unwrap().seconds, 10);
    let names: Vec<_> = r.routes[0].virtual_hosts[0].routes.iter().map(|r| r.name.as_str()).collect();
    let mint_at = names.iter().position(|n| n.starts_with("minting:/api/v1/minting/mint:")).unwrap();
    let rest_at = names.iter().position(|n| n.starts_with("minting:/api/v1/minting:")).unwrap();
    assert!(mint_at < rest_at, "the longer prefix is matched first");
    let retry = action(mint).retry_policy.as_ref().unwrap();
    assert_eq!(retry.per_try_timeout.as_ref().unwrap().seconds, 3);
    let keyed = action(route_named(&r, "minting:/api/v1/minting/mint:idempotency-key")).retry_policy.as_ref().unwrap();
    assert_eq!(keyed.num_retries.as_ref().unwrap().value, 2, "the registry's attempts");
    assert_eq!(keyed.retry_back_off.as_ref().unwrap().base_interval.as_ref().unwrap().nanos, 100_000_000, "and back-off");
    assert_eq!(action(mint).hash_policy.len(), 1, "ring hash on x-user-id");
}

#[test]
fn clusters_carry_breakers_outlier_detection_health_checks_and_lb_policy() {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;
    let r = traffic_resources();
    let minting = r.clusters.iter().find(|c| c.name == "svc_minting").unwrap();
    assert_eq!(minting.lb_policy, LbPolicy::RingHash as i32);
    let od = minting.outlier_detection.as_ref().unwrap();
    assert_eq!(od.failure_percentage_threshold.as_ref().unwrap().value, 40);
    assert_eq!(od.failure_percentage_request_volume.as_ref().unwrap().value, 20);
    assert_eq!(od.base_ejection_time.as_ref().unwrap().seconds, 15);
    assert_eq!(od.consecutive_5xx.as_ref().unwrap().value, 5);
    assert!(od.split_external_local_origin_errors, "connect failures are counted apart from 5xx");
    assert_eq!(od.consecutive_local_origin_failure.as_ref().unwrap().value, 5);
    assert_eq!(od.enforcing_consecutive_local_origin_failure.as_ref().unwrap().value, 100);
    assert!(od.always_eject_one_host.as_ref().unwrap().value, "one instance of one can be ejected");
    let thresholds = &minting.circuit_breakers.as_ref().unwrap().thresholds[0];
    assert_eq!(thresholds.max_connections.as_ref().unwrap().value, 10);
    assert_eq!(thresholds.max_requests.as_ref().unwrap().value, 1024);
    assert_eq!(minting.health_checks.len(), 1);
    assert_eq!(minting.health_checks[0].interval.as_ref().unwrap().seconds, 5);
    let search = r.clusters.iter().find(|c| c.name == "svc_search").unwrap();
    assert_eq!(search.lb_policy, LbPolicy::LeastRequest as i32);
    assert!(search.health_checks.is_empty(), "health checks can be turned off");
}

#[test]
fn an_instance_eds_drops_leaves_at_once_even_while_it_passes_health_checks() {
    let r = traffic_resources();
    let minting = r.clusters.iter().find(|c| c.name == "svc_minting").unwrap();
    assert_eq!(minting.health_checks.len(), 1);
    assert!(minting.ignore_health_on_host_removal);
    let search = r.clusters.iter().find(|c| c.name == "svc_search").unwrap();
    assert!(search.ignore_health_on_host_removal);
}

#[test]
fn cors_runs_before_authentication_with_the_policy_on_the_virtual_host() {
    let r = traffic_resources();
    let filters: Vec<_> = hcm(&r).http_filters.iter().map(|f| f.name.clone()).collect();
    assert_eq!(filters[0], "envoy.filters.http.cors", "preflights never need a token");
    assert_eq!(filters[1], "envoy.filters.http.local_ratelimit", "floods are refused before any token check");
    assert_eq!(filters[2], "stagedoor");
    let vh = &r.routes[0].virtual_hosts[0];
    let policy = &vh.typed_per_filter_config["envoy.filters.http.cors"];
    let policy = envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy::decode(policy.value.as_slice()).unwrap();
    assert_eq!(policy.allow_origin_string_match.len(), 1);
    assert_eq!(policy.allow_methods, "GET,POST,PUT,PATCH,DELETE,OPTIONS");
    assert!(!policy.forward_not_matching_preflights.unwrap().value);
    assert!(!hcm(&resources()).http_filters.iter().any(|f| f.name == "envoy.filters.http.cors"), "no CORS unless configured");
}

#[test]
fn bad_traffic_policy_is_refused_naming_the_field() {
    let bad = [
        ("timeout_ms: 10000", "timeout_ms: 0", "traffic.timeout_ms"),
        ("policy: ring_hash, hash_header: x-user-id", "policy: ring_hash", "traffic.load_balancing"),
        ("{ prefix: /api/v1/minting/mint, timeout_ms: 120000 }", "{ prefix: /api/v1/other, timeout_ms: 1 }", "traffic.route_timeouts[0].prefix"),
        ("error_threshold_percentage: 40", "error_threshold_percentage: 140", "traffic.circuit_breaker.error_threshold_percentage"),
        ("https://app.tickettoken.com", "app.tickettoken.com", "cors: allowed_origins"),
    ];
    for (from, to, field) in bad {
        let yaml = crate::test_support::registry_yaml(&TRAFFIC.replace(from, to));
        let e = Registry::parse("r", &yaml).unwrap_err().to_string();
        assert!(e.contains(field), "{to}: {e}");
    }
}

#[test]
fn a_snapshot_whose_listener_names_a_missing_or_mistyped_filter_config_is_inconsistent() {
    use crate::snapshot::{check_consistent, InconsistentSnapshot};
    let mut missing = resources();
    missing.extension_configs.clear();
    assert_eq!(
        check_consistent(&missing),
        Err(InconsistentSnapshot::MissingExtensionConfig { listener: "stagedoor_http".into(), filter: "stagedoor".into() })
    );
    let mut mistyped = resources();
    mistyped.extension_configs[0].typed_config = Some(to_any(&StringValue { value: String::new() }));
    assert!(
        matches!(check_consistent(&mistyped), Err(InconsistentSnapshot::ExtensionConfigType { found, .. }) if found == "type.googleapis.com/google.protobuf.StringValue")
    );
    let mut renamed = resources();
    renamed.extension_configs[0].name = "other".into();
    assert!(matches!(check_consistent(&renamed), Err(InconsistentSnapshot::MissingExtensionConfig { .. })));
}

#[test]
fn the_shipped_composites_reach_the_filter_and_a_bad_source_is_refused_naming_it() {
    let registry = crate::test_support::shipped_registry("composites");
    let config = check::check(&registry, None).unwrap();
    let names: Vec<&str> = config.composites.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["event-details", "user-dashboard"]);
    let policy = stagedoor_filter_core::Policy::compile(&config).unwrap();
    let details = policy.composite_for("/api/v1/aggregate/events/e1").unwrap();
    let clusters: Vec<&str> = details.sources.iter().map(|s| s.cluster.as_str()).collect();
    // Every source goes through a cluster this control plane publishes.
    assert_eq!(clusters, ["svc_event", "svc_venue", "svc_ticket", "svc_minting", "svc_analytics"]);
    assert!(clusters.iter().all(|c| registry.services.contains_key(c.trim_start_matches("svc_"))));

    let mut bad = registry.clone();
    bad.composites[1].sources[2].service = "nft".into();
    let e = check::check(&bad, None).unwrap_err().in_file("r").to_string();
    assert_eq!(e, "r: composites[1] (user-dashboard): sources[2] (nfts).service: no service \"nft\" in the registry");
}

#[test]
fn the_shipped_cache_routes_reach_the_filter_and_a_rewritten_prefix_is_refused() {
    let registry = crate::test_support::shipped_registry("cache-routes");
    let config = check::check(&registry, None).unwrap();
    let ttls: Vec<(&str, u64)> = config.response_cache.iter().map(|r| (r.name.as_str(), r.ttl_secs)).collect();
    assert_eq!(ttls, [("events", 600), ("venues", 1800), ("ticket-availability", 30), ("search", 300)]);
    let policy = stagedoor_filter_core::Policy::compile(&config).unwrap();
    let (route, service) = policy.cache_route_on_path("/api/v1/search").unwrap();
    assert_eq!((route.name.as_str(), service), ("search", "search"));
    assert!(route.covers("GET", "/api/v1/search"));
    assert!(!route.covers("POST", "/api/v1/search"), "a POST on a cached path is not cached");

    let yaml = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../registry/tickettoken.yaml")).unwrap();
    let without_tls = yaml.split("edge_tls:").next().unwrap().to_owned()
        + yaml.split_once("rate_limit:").map(|(_, rest)| format!("rate_limit:{rest}")).unwrap().as_str();
    let bad = without_tls.replace("path: /api/v1/search, ttl_secs: 300", "path: /webhooks/stripe, ttl_secs: 300");
    let e = Registry::parse("r", &bad).unwrap_err().to_string();
    assert_eq!(e, "r: response_cache[3] (search): path: is under /webhooks, which is rewritten to the service: not cacheable");
}

#[test]
fn only_the_routes_of_a_prefix_with_a_cached_path_answer_the_filters_bypass_mark_as_x_cache() {
    let registry = crate::test_support::shipped_registry("cache-bypass-header");
    let resources = translate_static(&registry, &options()).unwrap();
    let x_cache = |name: &str| -> Vec<(String, String)> {
        route_named(&resources, name)
            .response_headers_to_add
            .iter()
            .filter_map(|h| h.header.as_ref())
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect()
    };
    let mark = vec![(String::from("x-cache"), format!("%FILTER_STATE(wasm.{}:PLAIN)%", stagedoor_filter_core::response_cache::BYPASS_FILTER_STATE))];
    for kind in ["idempotency-key", "idempotent", "other"] {
        assert_eq!(x_cache(&format!("venue:/api/v1/venues:{kind}")), mark, "venues is cached");
        assert_eq!(x_cache(&format!("search:/api/v1/search:{kind}")), mark);
        assert_eq!(x_cache(&format!("payment:/api/v1/payments:{kind}")), vec![], "no cached path: nothing to read per answer");
    }
}

#[test]
fn a_stale_window_over_the_bound_is_refused_naming_the_route_and_field() {
    let yaml = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../registry/tickettoken.yaml")).unwrap();
    let without_tls = yaml.split("edge_tls:").next().unwrap().to_owned()
        + yaml.split_once("rate_limit:").map(|(_, rest)| format!("rate_limit:{rest}")).unwrap().as_str();
    let bad = without_tls.replace("path: /api/v1/search, ttl_secs: 300", "path: /api/v1/search, ttl_secs: 300, stale_while_revalidate: 90000");
    // Refused when the registry is read, or by the filter's compiler the check runs.
    let e = match Registry::parse("r", &bad) {
        Err(e) => e.to_string(),
        Ok(registry) => check::check(&registry, None).unwrap_err().in_file("r").to_string(),
    };
    assert!(e.contains("search") && e.contains("stale_while_revalidate: must be 0 to 86400 seconds"), "{e}");
}

#[test]
fn an_hmac_only_registry_gets_the_hmac_only_module_when_serve_has_one() {
    let registry = Registry::parse("r", &crate::test_support::registry_yaml(SERVICES)).unwrap();
    let code = |options: &TranslateOptions| {
        let vm = plugin(&translate_static(&registry, options).unwrap()).vm;
        let Some(envoy_types::pb::envoy::extensions::wasm::v3::plugin_config::Vm::VmConfig(vm)) = vm else { panic!("a VM config") };
        format!("{:?}", vm.code)
    };
    let with_hmac = TranslateOptions { hmac_wasm_path: Some(String::from("/x/hmac.wasm")), ..options() };
    assert!(code(&with_hmac).contains("/x/hmac.wasm"), "{}", code(&with_hmac));
    assert!(code(&options()).contains("/x/f.wasm"));
}
