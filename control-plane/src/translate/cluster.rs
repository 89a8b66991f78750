//! CDS and EDS: one EDS cluster per service, its instances as one locality.

use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType, EdsClusterConfig};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{
    address, config_source, socket_address, AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress,
};
use envoy_types::pb::envoy::config::core::v3::Address;
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::google::protobuf::Duration;

use super::names;
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
    Cluster {
        name: name.clone(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig { eds_config: Some(ads_source()), service_name: name }),
        connect_timeout: Some(Duration { seconds: 1, nanos: 0 }),
        ..Default::default()
    }
}

pub fn load_assignment(service: &ServiceSpec) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: names::cluster(&service.name),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: service.instances.iter().map(lb_endpoint).collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn lb_endpoint(instance: &InstanceSpec) -> LbEndpoint {
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

/// A static cluster to the control plane's HTTP side (the revocation feed).
pub fn control_plane(addr: std::net::SocketAddr) -> Cluster {
    let name = names::CONTROL_PLANE_CLUSTER.to_owned();
    Cluster {
        name: name.clone(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(Duration { seconds: 1, nanos: 0 }),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name,
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![lb_endpoint(&InstanceSpec { address: addr.ip().to_string(), port: addr.port() })],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}
