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
        control_plane_http: Some(SocketAddr::from(([127, 0, 0, 1], 18080))),
    }
}

fn resources() -> Resources {
    translate(&Registry::parse("r", &crate::test_support::registry_yaml(SERVICES)).unwrap(), &options()).unwrap()
}

fn hcm(resources: &Resources) -> HttpConnectionManager {
    let Some(filter::ConfigType::TypedConfig(any)) = &resources.listeners[0].filter_chains[0].filters[0].config_type
    else {
        panic!("no typed config")
    };
    HttpConnectionManager::decode(any.value.as_slice()).unwrap()
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
    assert_eq!(matches, ["=/health", "/api/v1/venues/admin", "/api/v1/payments", "/api/v1/venues", "/webhooks"]);
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
        ["envoy.filters.http.wasm", "envoy.filters.http.header_mutation", "envoy.filters.http.router"],
        "auth runs before routing; internal response headers are stripped natively"
    );
}

#[test]
fn the_filter_gets_the_shared_config_type_for_every_service() {
    let hcm = hcm(&resources());
    let Some(http_filter::ConfigType::TypedConfig(any)) = &hcm.http_filters[0].config_type else { panic!() };
    let wasm = Wasm::decode(any.value.as_slice()).unwrap();
    let plugin = wasm.config.unwrap();
    let json = StringValue::decode(plugin.configuration.unwrap().value.as_slice()).unwrap().value;
    let config = FilterConfig::from_json(json.as_bytes()).unwrap();
    let names: Vec<_> = config.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["payment", "venue", "venue-admin"]);
    assert_eq!(config.services[0].public_paths, ["/webhooks/*"]);
    assert_eq!(config.services[0].prefixes, ["/api/v1/payments", "/webhooks"]);
    stagedoor_filter_core::Policy::compile(&config).unwrap();
}

#[test]
fn translation_is_deterministic() {
    assert_eq!(resources(), resources());
}

#[test]
fn the_filter_polls_revocations_through_the_control_plane_cluster() {
    let hcm = hcm(&resources());
    let Some(http_filter::ConfigType::TypedConfig(any)) = &hcm.http_filters[0].config_type else { panic!() };
    let plugin = Wasm::decode(any.value.as_slice()).unwrap().config.unwrap();
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
