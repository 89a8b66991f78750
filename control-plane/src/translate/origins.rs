//! Which registry entry each published resource is made from, so a NACK names the service
//! and the field an operator has to fix, not only Envoy's resource name. Built by the same
//! translation that makes the resources, from the same names (`names.rs`).

use super::names;
use crate::registry::{Registry, ServiceSpec};
use crate::resources::type_url;
use crate::xds::ledger::RegistryEntry;

/// (type URL, resource name) -> the registry entry it comes from. Persistent, so the
/// incremental translation patches the entries of the services that changed and shares the
/// rest with the previous snapshot's.
pub type Origins = imbl::OrdMap<OriginKey, RegistryEntry>;

/// (type URL, resource name).
pub type OriginKey = (&'static str, String);

fn entry(service: Option<&str>, field: &str) -> RegistryEntry {
    RegistryEntry { service: service.map(str::to_owned), route: None, field: field.to_owned() }
}

/// The registry fields a service's cluster is made from: those the service sets, or
/// `traffic` when it sets none (the defaults).
fn cluster_fields(service: &ServiceSpec) -> String {
    let traffic = &service.traffic;
    let set = [
        ("traffic.load_balancing", traffic.load_balancing.is_some()),
        ("traffic.circuit_breaker", traffic.circuit_breaker.is_some()),
        ("traffic.health_check", traffic.health_check.is_some()),
        ("tls", service.tls.is_some()),
    ];
    let fields: Vec<&str> = set.iter().filter(|(_, is_set)| *is_set).map(|(field, _)| *field).collect();
    if fields.is_empty() {
        String::from("traffic")
    } else {
        fields.join(", ")
    }
}

/// The origins of one service's resources: its cluster and endpoints, and with
/// `upstream_tls` its two TLS secrets. A retired service has no TLS secret any more.
pub fn service_origins(service: &ServiceSpec, upstream_tls: bool) -> Vec<(OriginKey, RegistryEntry)> {
    let name = Some(service.name.as_str());
    let mut own = vec![
        ((type_url::CLUSTER, names::cluster(&service.name)), entry(name, &cluster_fields(service))),
        ((type_url::ENDPOINT, names::cluster(&service.name)), entry(name, "instances")),
    ];
    if upstream_tls {
        own.push(((type_url::SECRET, names::upstream_ca_secret(&service.name)), entry(name, "tls.ca")));
        own.push(((type_url::SECRET, names::upstream_client_secret(&service.name)), entry(name, "tls.client")));
    }
    own
}

/// The origins of the resources every service shares: the listeners, the route
/// configuration, the filter config.
pub fn shared_origins() -> Vec<(OriginKey, RegistryEntry)> {
    let listener_fields = "cors, rate_limit, global_rate_limits, edge_tls";
    let filter_fields = "auth, roles, keys, webhooks, services[].rules, services[].public_paths, services[].request_headers, services[].validation";
    vec![
        ((type_url::LISTENER, names::LISTENER.to_owned()), entry(None, listener_fields)),
        ((type_url::LISTENER, names::HTTPS_LISTENER.to_owned()), entry(None, listener_fields)),
        ((type_url::ROUTE, names::ROUTE_CONFIG.to_owned()), entry(None, "services[].routes, services[].traffic, cors")),
        ((type_url::EXTENSION_CONFIG, names::FILTER_EXTENSION_CONFIG.to_owned()), entry(None, filter_fields)),
    ]
}

/// The origin of every resource `translate` makes from `registry` (and `retired` services,
/// whose clusters outlive their routes a few seconds), made whole. The control plane's own
/// clusters are not the registry's and have no entry. The incremental translation makes the
/// same map from the same parts ([`service_origins`], [`shared_origins`]).
pub fn origins(registry: &Registry, retired: &[&ServiceSpec]) -> Origins {
    let mut map = Origins::new();
    for service in registry.services.values() {
        map.extend(service_origins(service, registry.upstream_tls.contains_key(&service.name)));
    }
    for service in retired.iter().copied().filter(|s| !registry.services.contains_key(&s.name)) {
        map.extend(service_origins(service, false));
    }
    map.extend(shared_origins());
    map
}

/// The entry of one resource; edge secrets are named by their SNI name, so they are
/// matched by prefix.
pub fn origin_of(origins: &Origins, type_url: &'static str, name: &str) -> Option<RegistryEntry> {
    if let Some(found) = origins.get(&(type_url, name.to_owned())) {
        return Some(found.clone());
    }
    let edge_secret = type_url == type_url::SECRET && (name.starts_with("edge_cert_") || name.starts_with("edge_client_ca_"));
    edge_secret.then(|| entry(None, "edge_tls"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_names_its_service_and_the_fields_it_sets() {
        let yaml = crate::test_support::registry_yaml(
            "services:
  - name: venue
    routes: [{prefix: /api/v1/venues}]
    instances: [{address: 127.0.0.1, port: 9000}]
    traffic: {load_balancing: {policy: ring_hash, hash_header: x-user}}
  - name: plain
    routes: [{prefix: /p}]
    instances: [{address: 127.0.0.1, port: 9001}]
",
        );
        let registry = Registry::parse("test", &yaml).expect("a valid registry");
        let origins = origins(&registry, &[]);
        let venue = origin_of(&origins, type_url::CLUSTER, "svc_venue").expect("the cluster has an origin");
        assert_eq!(venue, entry(Some("venue"), "traffic.load_balancing"));
        assert_eq!(origin_of(&origins, type_url::CLUSTER, "svc_plain"), Some(entry(Some("plain"), "traffic")));
        assert_eq!(origin_of(&origins, type_url::ENDPOINT, "svc_venue"), Some(entry(Some("venue"), "instances")));
        assert!(origin_of(&origins, type_url::EXTENSION_CONFIG, "stagedoor").is_some_and(|e| e.field.contains("rules")));
        assert_eq!(origin_of(&origins, type_url::CLUSTER, names::CONTROL_PLANE_CLUSTER), None, "not the registry's");
        assert_eq!(origin_of(&origins, type_url::SECRET, "edge_cert_example.com"), Some(entry(None, "edge_tls")));
    }
}
