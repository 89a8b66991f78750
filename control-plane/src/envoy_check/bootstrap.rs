//! Snapshot -> static Envoy bootstrap: what an Envoy on ADS would run, as one file Envoy
//! can validate on its own. EDS clusters become STATIC with their load assignment, the
//! connection manager's RDS becomes its route configuration, the filter's ECDS reference
//! becomes its typed config, and SDS references name static secrets (the snapshot's own,
//! which carry their PEM inline, and the Envoy identity the real bootstrap holds).

use std::path::PathBuf;

use envoy_types::pb::envoy::config::bootstrap::v3::bootstrap::StaticResources;
use envoy_types::pb::envoy::config::bootstrap::v3::{runtime_layer, Bootstrap, LayeredRuntime, RuntimeLayer};
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{data_source, transport_socket, DataSource, Node, TransportSocket};
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{http_filter, HttpConnectionManager};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, Secret, TlsCertificate, UpstreamTlsContext,
};
use envoy_types::pb::google::protobuf::{value, Any, Struct, Value};
use prost::{Message, Name};

use crate::translate::{names, to_any, Resources};

/// The RE2 program size Envoy accepts before refusing a regex, as envoy/bootstrap.yaml
/// raises it (the response-strip regex is larger than Envoy's default of 100): without it
/// Envoy would refuse here a listener the real bootstrap accepts.
pub const RE2_MAX_PROGRAM_SIZE_ERROR_LEVEL: f64 = 1000.0;

/// The files behind the two static secrets of the real bootstrap (envoy/bootstrap.yaml),
/// which the control-plane cluster names.
#[derive(Debug, Clone)]
pub struct Identity {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// What goes in the bootstrap: everything, the clusters and secrets alone, or one cluster
/// and the secrets (to find, when Envoy's message names no resource, which part it refuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Everything,
    ClustersOnly,
    /// The snapshot's cluster at this index.
    OneCluster(usize),
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{resource}: its {what} does not decode: {source}")]
    Decode { resource: String, what: &'static str, source: prost::DecodeError },
    #[error("{resource}: names {kind} {name:?}, which the snapshot does not have")]
    Missing { resource: String, kind: &'static str, name: String },
}

pub fn static_bootstrap(resources: &Resources, identity: &Identity, scope: Scope) -> Result<Bootstrap, BootstrapError> {
    let included = |i: usize| !matches!(scope, Scope::OneCluster(only) if only != i);
    let clusters = resources
        .clusters
        .iter()
        .enumerate()
        .filter(|(i, _)| included(*i))
        .map(|(_, c)| static_cluster(c, resources))
        .collect::<Result<Vec<_>, _>>()?;
    let listeners = match scope {
        Scope::Everything => resources.listeners.iter().map(|l| static_listener(l, resources)).collect::<Result<Vec<_>, _>>()?,
        Scope::ClustersOnly | Scope::OneCluster(_) => Vec::new(),
    };
    let mut secrets = resources.secrets.clone();
    secrets.extend(identity_secrets(identity));
    Ok(Bootstrap {
        node: Some(Node { id: String::from("stagedoor-validate"), cluster: String::from("stagedoor-gateway"), ..Default::default() }),
        static_resources: Some(StaticResources { listeners, clusters, secrets }),
        layered_runtime: Some(runtime()),
        ..Default::default()
    })
}

fn static_cluster(cluster: &Cluster, resources: &Resources) -> Result<Cluster, BootstrapError> {
    let mut cluster = cluster.clone();
    if cluster.cluster_discovery_type == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)) {
        let service_name = cluster.eds_cluster_config.take().map(|eds| eds.service_name).filter(|n| !n.is_empty());
        let wanted = service_name.unwrap_or_else(|| cluster.name.clone());
        let endpoints = resources.endpoints.iter().find(|e| e.cluster_name == wanted).ok_or_else(|| BootstrapError::Missing {
            resource: format!("cluster {}", cluster.name),
            kind: "load assignment",
            name: wanted.clone(),
        })?;
        cluster.cluster_discovery_type = Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32));
        cluster.load_assignment = Some(endpoints.clone());
    }
    if let Some(socket) = cluster.transport_socket.as_mut() {
        let resource = format!("cluster {}", cluster.name);
        rewrite_tls::<UpstreamTlsContext>(socket, &resource, |tls| tls.common_tls_context.as_mut())?;
    }
    Ok(cluster)
}

fn static_listener(listener: &Listener, resources: &Resources) -> Result<Listener, BootstrapError> {
    let mut listener = listener.clone();
    let resource = format!("listener {}", listener.name);
    for chain in &mut listener.filter_chains {
        if let Some(socket) = chain.transport_socket.as_mut() {
            rewrite_tls::<DownstreamTlsContext>(socket, &resource, |tls| tls.common_tls_context.as_mut())?;
        }
        for network_filter in &mut chain.filters {
            let Some(filter::ConfigType::TypedConfig(any)) = network_filter.config_type.as_mut() else { continue };
            if any.type_url == HttpConnectionManager::type_url() {
                *any = inline_connection_manager(any, &resource, resources)?;
            }
        }
    }
    Ok(listener)
}

/// RDS -> the route configuration, ECDS -> the extension config's typed config.
fn inline_connection_manager(any: &Any, resource: &str, resources: &Resources) -> Result<Any, BootstrapError> {
    let mut hcm = decode::<HttpConnectionManager>(any, resource, "connection manager")?;
    if let Some(RouteSpecifier::Rds(rds)) = &hcm.route_specifier {
        let routes = resources.routes.iter().find(|r| r.name == rds.route_config_name).ok_or_else(|| BootstrapError::Missing {
            resource: resource.to_owned(),
            kind: "route configuration",
            name: rds.route_config_name.clone(),
        })?;
        hcm.route_specifier = Some(RouteSpecifier::RouteConfig(routes.clone()));
    }
    for http_filter in &mut hcm.http_filters {
        let Some(http_filter::ConfigType::ConfigDiscovery(_)) = &http_filter.config_type else { continue };
        let extension = resources.extension_configs.iter().find(|e| e.name == http_filter.name).ok_or_else(|| BootstrapError::Missing {
            resource: resource.to_owned(),
            kind: "filter config",
            name: http_filter.name.clone(),
        })?;
        http_filter.config_type = extension.typed_config.clone().map(http_filter::ConfigType::TypedConfig);
    }
    Ok(to_any(&hcm))
}

/// SDS over ADS -> the static secret of the same name (an SdsSecretConfig without a
/// config source names a static secret).
fn rewrite_tls<T: Message + Name + Default>(
    socket: &mut TransportSocket,
    resource: &str,
    common: impl Fn(&mut T) -> Option<&mut CommonTlsContext>,
) -> Result<(), BootstrapError> {
    let Some(transport_socket::ConfigType::TypedConfig(any)) = socket.config_type.as_mut() else { return Ok(()) };
    if any.type_url != T::type_url() {
        return Ok(());
    }
    let mut tls = decode::<T>(any, resource, "TLS context")?;
    if let Some(context) = common(&mut tls) {
        static_secrets(context);
    }
    *any = to_any(&tls);
    Ok(())
}

fn static_secrets(context: &mut CommonTlsContext) {
    for config in &mut context.tls_certificate_sds_secret_configs {
        config.sds_config = None;
    }
    match context.validation_context_type.as_mut() {
        Some(ValidationContextType::ValidationContextSdsSecretConfig(config)) => config.sds_config = None,
        Some(ValidationContextType::CombinedValidationContext(combined)) => {
            if let Some(config) = combined.validation_context_sds_secret_config.as_mut() {
                config.sds_config = None;
            }
        }
        _ => {}
    }
}

fn decode<T: Message + Default>(any: &Any, resource: &str, what: &'static str) -> Result<T, BootstrapError> {
    T::decode(any.value.as_slice()).map_err(|source| BootstrapError::Decode { resource: resource.to_owned(), what, source })
}

fn file(path: &std::path::Path) -> Option<DataSource> {
    Some(DataSource { specifier: Some(data_source::Specifier::Filename(path.display().to_string())), ..Default::default() })
}

fn identity_secrets(identity: &Identity) -> [Secret; 2] {
    [
        Secret {
            name: names::ENVOY_IDENTITY_SECRET.to_owned(),
            r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                certificate_chain: file(&identity.certificate),
                private_key: file(&identity.key),
                ..Default::default()
            })),
        },
        Secret {
            name: names::CA_SECRET.to_owned(),
            r#type: Some(secret::Type::ValidationContext(CertificateValidationContext { trusted_ca: file(&identity.ca), ..Default::default() })),
        },
    ]
}

fn runtime() -> LayeredRuntime {
    let level = Value { kind: Some(value::Kind::NumberValue(RE2_MAX_PROGRAM_SIZE_ERROR_LEVEL)) };
    let fields = std::collections::HashMap::from([(String::from("re2.max_program_size.error_level"), level)]);
    LayeredRuntime {
        layers: vec![RuntimeLayer {
            name: String::from("static"),
            layer_specifier: Some(runtime_layer::LayerSpecifier::StaticLayer(Struct { fields })),
        }],
    }
}
