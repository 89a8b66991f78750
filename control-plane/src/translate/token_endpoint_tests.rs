//! The token endpoint in the snapshot: its cluster (mutual TLS like the feed's), its two
//! routes ahead of the auth service's prefix, and the filter's view of the same paths.

use envoy_types::pb::envoy::config::route::v3::{route, route_action, route_match};

use super::*;
use crate::registry::token_endpoint::{LOGOUT_PATH, REFRESH_PATH};

const WITH_ENDPOINT: &str = "token_endpoint:
  instance: { address: 127.0.0.1, port: 18090 }
  refresh_key: { kid: refresh-1, secret: unit-test-refresh-secret-refresh-0123456 }
services:
  - name: auth
    routes: [{ prefix: /api/v1/auth }]
    instances: [{ address: 127.0.0.1, port: 3001 }]
";

fn resources(yaml: &str) -> Resources {
    let registry = Registry::parse("test", &format!("{}{yaml}", crate::test_support::AUTH)).unwrap();
    let mut options = crate::test_support::translate_options(8080);
    options.control_plane_http = Some((String::from("127.0.0.1"), 18080));
    options.control_plane_tls = true;
    translate(&registry, &crate::registry::LiveInstances::new(), &[], &options).unwrap()
}

fn cluster_of(r: &envoy_types::pb::envoy::config::route::v3::Route) -> Option<&str> {
    match &r.action {
        Some(route::Action::Route(action)) => match &action.cluster_specifier {
            Some(route_action::ClusterSpecifier::Cluster(c)) => Some(c.as_str()),
            _ => None,
        },
        _ => None,
    }
}

#[test]
fn refresh_and_logout_route_to_the_token_endpoint_ahead_of_the_auth_service() {
    let resources = resources(WITH_ENDPOINT);
    let cluster = resources.clusters.iter().find(|c| c.name == names::TOKEN_ENDPOINT_CLUSTER).expect("the token endpoint's cluster");
    assert!(cluster.transport_socket.is_some(), "mutual TLS, as to the revocation feed");
    assert!(format!("{:?}", cluster.load_assignment).contains("18090"));
    let routes = &resources.routes[0].virtual_hosts[0].routes;
    let first_auth = routes.iter().position(|r| cluster_of(r) == Some("svc_auth")).unwrap();
    for path in [REFRESH_PATH, LOGOUT_PATH] {
        let at = routes
            .iter()
            .position(|r| {
                matches!(&r.r#match.as_ref().and_then(|m| m.path_specifier.clone()), Some(route_match::PathSpecifier::PathSeparatedPrefix(p)) if p == path)
            })
            .unwrap_or_else(|| panic!("no route for {path}"));
        assert_eq!(cluster_of(&routes[at]), Some(names::TOKEN_ENDPOINT_CLUSTER));
        assert!(at < first_auth, "{path} is matched before the auth service's /api/v1/auth");
    }
    crate::snapshot::check_consistent(&resources).unwrap();
}

#[test]
fn the_filter_sees_the_token_endpoints_paths_as_public_and_nothing_changes_without_it() {
    let registry = Registry::parse("test", &format!("{}{WITH_ENDPOINT}", crate::test_support::AUTH)).unwrap();
    let config = check(&registry, None).unwrap();
    let service = config.services.iter().find(|s| s.name == names::TOKEN_ENDPOINT_SERVICE).unwrap();
    assert_eq!(service.prefixes, [REFRESH_PATH, LOGOUT_PATH]);
    let policy = stagedoor_filter_core::Policy::compile(&config).unwrap();
    for path in [REFRESH_PATH, LOGOUT_PATH, "/api/v1/auth/refresh/x"] {
        let readings = stagedoor_filter_core::path::PathReadings::read(path).unwrap();
        let owner = policy.service_for(path).unwrap();
        assert!(owner.is_public(&readings), "{path}");
    }

    let without = WITH_ENDPOINT.split("services:").nth(1).unwrap();
    let plain = resources(&format!("services:{without}"));
    assert!(plain.clusters.iter().all(|c| c.name != names::TOKEN_ENDPOINT_CLUSTER));
    let routes = &plain.routes[0].virtual_hosts[0].routes;
    assert!(routes.iter().all(|r| cluster_of(r) != Some(names::TOKEN_ENDPOINT_CLUSTER)));
}
