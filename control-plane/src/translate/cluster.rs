//! CDS and EDS: one EDS cluster per service, its instances as one locality.

use envoy_types::pb::envoy::config::cluster::v3::cluster::{self, ClusterDiscoveryType, DiscoveryType, EdsClusterConfig};
use envoy_types::pb::envoy::config::cluster::v3::{circuit_breakers, CircuitBreakers, Cluster, OutlierDetection};
use envoy_types::pb::envoy::config::core::v3::{health_check, HealthCheck};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use envoy_types::pb::envoy::config::core::v3::{
    address, config_source, socket_address, AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress,
};
use envoy_types::pb::envoy::config::core::v3::Address;
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use std::collections::BTreeSet;

use envoy_types::pb::google::protobuf::Duration;

use super::names;
use crate::registry::traffic::{CircuitBreakerSpec, HealthCheckSpec, LbPolicy};
use crate::registry::{InstanceSpec, ServiceSpec};

pub fn ads_source() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

pub fn cluster(service: &ServiceSpec) -> Cluster {
    let name = names::cluster(&service.name);
    let traffic = service.traffic.resolve(&service.name);
    let cb = &traffic.circuit_breaker;
    let lb_policy = lb_policy(&traffic.load_balancing.policy);
    Cluster {
        name: name.clone(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig { eds_config: Some(ads_source()), service_name: name }),
        connect_timeout: Some(Duration { seconds: 1, nanos: 0 }),
        lb_policy: lb_policy as i32,
        circuit_breakers: Some(CircuitBreakers {
            thresholds: vec![circuit_breakers::Thresholds {
                max_connections: Some(UInt32Value { value: cb.max_connections }),
                max_pending_requests: Some(UInt32Value { value: cb.max_pending_requests }),
                max_requests: Some(UInt32Value { value: cb.max_requests }),
                max_retries: Some(UInt32Value { value: cb.max_retries }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        outlier_detection: Some(outlier_detection(cb)),
        health_checks: traffic.health_check.iter().map(health_check).collect(),
        // Removed means removed: without this Envoy keeps a host EDS dropped for as long as
        // it passes health checks (/clusters: pending_dynamic_removal), so a deregistered or
        // expired instance kept half the traffic.
        ignore_health_on_host_removal: true,
        ..Default::default()
    }
}

/// The original's breaker (error percentage over a 10 s rolling window with a volume
/// threshold, reset after a timeout) as Envoy's outlier detection, per instance: an
/// instance that fails is ejected for `reset_timeout_ms` while the others keep serving.
///
/// Connect failures (refused, timed out, reset before a response) are counted apart from
/// the upstream's 5xx, and `consecutive_5xx` of them in a row eject at once: a dead instance
/// is out after a few requests instead of read healthy after dozens of refusals.
fn outlier_detection(cb: &CircuitBreakerSpec) -> OutlierDetection {
    OutlierDetection {
        interval: Some(millis(10_000)),
        consecutive_5xx: Some(UInt32Value { value: cb.consecutive_5xx }),
        split_external_local_origin_errors: true,
        consecutive_local_origin_failure: Some(UInt32Value { value: cb.consecutive_5xx }),
        enforcing_consecutive_local_origin_failure: Some(UInt32Value { value: 100 }),
        // The one instance of a service is ejected too (max_ejection_percent alone never
        // ejects one of one): Envoy then still tries it, in panic mode, but /clusters and
        // the ejection stats say what is wrong.
        always_eject_one_host: Some(BoolValue { value: true }),
        failure_percentage_threshold: Some(UInt32Value { value: cb.error_threshold_percentage }),
        failure_percentage_request_volume: Some(UInt32Value { value: cb.volume_threshold }),
        failure_percentage_minimum_hosts: Some(UInt32Value { value: 1 }),
        enforcing_failure_percentage: Some(UInt32Value { value: 100 }),
        base_ejection_time: Some(millis(cb.reset_timeout_ms)),
        // With few instances Envoy's default 10 % would never eject one; half may go.
        max_ejection_percent: Some(UInt32Value { value: 50 }),
        ..Default::default()
    }
}

fn health_check(hc: &HealthCheckSpec) -> HealthCheck {
    HealthCheck {
        timeout: Some(millis(hc.timeout_ms)),
        interval: Some(millis(hc.interval_ms)),
        healthy_threshold: Some(UInt32Value { value: hc.healthy_threshold }),
        unhealthy_threshold: Some(UInt32Value { value: hc.unhealthy_threshold }),
        health_checker: Some(health_check::HealthChecker::HttpHealthCheck(health_check::HttpHealthCheck {
            path: hc.path.clone(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn lb_policy(policy: &LbPolicy) -> cluster::LbPolicy {
    match policy {
        LbPolicy::RoundRobin => cluster::LbPolicy::RoundRobin,
        LbPolicy::LeastRequest => cluster::LbPolicy::LeastRequest,
        LbPolicy::Random => cluster::LbPolicy::Random,
        LbPolicy::RingHash => cluster::LbPolicy::RingHash,
        LbPolicy::Maglev => cluster::LbPolicy::Maglev,
    }
}

pub fn millis(ms: u64) -> Duration {
    Duration { seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX), nanos: ((ms % 1000) * 1_000_000) as i32 }
}

/// The registry's static instances plus the live ones, each once, in a stable order.
pub fn load_assignment(service: &ServiceSpec, live: Option<&BTreeSet<InstanceSpec>>) -> ClusterLoadAssignment {
    let instances: BTreeSet<&InstanceSpec> = service.instances.iter().chain(live.into_iter().flatten()).collect();
    ClusterLoadAssignment {
        cluster_name: names::cluster(&service.name),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: instances.into_iter().map(lb_endpoint).collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn lb_endpoint(instance: &InstanceSpec) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(socket(&instance.address, instance.port)),
            ..Default::default()
        })),
        ..Default::default()
    }
}

pub fn socket(address: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: address.to_owned(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

/// A cluster to the control plane's HTTP side (the revocation feed): static for an IP,
/// DNS-resolved for a name (a compose or Kubernetes service); over mutual TLS unless the
/// control plane runs `--insecure`.
pub fn control_plane(host: &str, port: u16, tls: bool) -> Cluster {
    static_or_dns(names::CONTROL_PLANE_CLUSTER, host, port, tls)
}

/// The token endpoint (a `stagedoor serve` too, so the same mutual TLS as the feed's).
pub fn token_endpoint(host: &str, port: u16, tls: bool) -> Cluster {
    static_or_dns(names::TOKEN_ENDPOINT_CLUSTER, host, port, tls)
}

fn static_or_dns(name: &str, host: &str, port: u16, tls: bool) -> Cluster {
    let name = name.to_owned();
    let kind = if host.parse::<std::net::IpAddr>().is_ok() { DiscoveryType::Static } else { DiscoveryType::StrictDns };
    Cluster {
        name: name.clone(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(kind as i32)),
        connect_timeout: Some(Duration { seconds: 1, nanos: 0 }),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name,
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![lb_endpoint(&InstanceSpec { address: host.to_owned(), port })],
                ..Default::default()
            }],
            ..Default::default()
        }),
        transport_socket: tls.then(super::control_plane_tls::transport_socket),
        ..Default::default()
    }
}
