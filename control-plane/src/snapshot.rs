//! A snapshot: one consistent set of resources of the five xDS types, each type with its
//! own version so an unchanged type is never re-sent.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::listener::v3::filter;
use envoy_types::pb::envoy::config::route::v3::{route, route_action};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use crate::translate::{to_any, Resources};
use crate::resources::type_url;

/// The resources of one xDS type at one version, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedResources {
    pub version: String,
    pub resources: BTreeMap<String, Any>,
    /// A content hash per resource: what delta xDS compares with what an Envoy holds.
    pub hashes: BTreeMap<String, String>,
}

impl TypedResources {
    fn new(version: String, resources: BTreeMap<String, Any>) -> Self {
        let hashes = resources.iter().map(|(name, any)| (name.clone(), crate::hash::short_hash(&any.value))).collect();
        Self { version, resources, hashes }
    }
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Identifies the whole snapshot: derived from the six type versions.
    pub version: String,
    /// The registry version this snapshot was built from.
    pub registry_version: String,
    pub types: BTreeMap<&'static str, TypedResources>,
    /// Which registry entry each resource comes from, for NACKs (set by `build_snapshot`).
    pub origins: std::sync::Arc<crate::translate::origins::Origins>,
    resources: Resources,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InconsistentSnapshot {
    #[error("cluster {cluster} has no endpoints resource {service}")]
    MissingEndpoints { cluster: String, service: String },
    #[error("listener {listener} uses route configuration {route_config}, which does not exist")]
    MissingRouteConfig { listener: String, route_config: String },
    #[error("route {route} sends traffic to cluster {cluster}, which does not exist")]
    MissingCluster { route: String, cluster: String },
    #[error("listener {listener} has filter {filter} configured over ECDS, and no such extension config exists")]
    MissingExtensionConfig { listener: String, filter: String },
    #[error("listener {listener} has filter {filter} accepting {accepted:?}, but its extension config is a {found}")]
    ExtensionConfigType { listener: String, filter: String, accepted: Vec<String>, found: String },
    #[error("{owner} names secret {secret} over SDS, and no such secret exists")]
    MissingSecret { owner: String, secret: String },
    #[error("{owner} has a TLS context that does not decode")]
    BadTlsContext { owner: String },
    #[error("listener {listener} has a connection manager that does not decode")]
    BadListener { listener: String },
}

impl Snapshot {
    /// The resources as translated (`stagedoor validate --envoy` renders them as a bootstrap).
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    /// Builds a snapshot from freshly translated resources. `inputs_version` identifies what
    /// they were made from; a type whose resources equal the previous snapshot's keeps the
    /// previous version, so it is not pushed again.
    pub fn build(
        resources: Resources,
        registry_version: &str,
        inputs_version: &str,
        previous: Option<&Snapshot>,
    ) -> Result<Self, InconsistentSnapshot> {
        check_consistent(&resources)?;
        let version_of = |unchanged: bool, type_url: &str| match previous {
            Some(prev) if unchanged => prev.types.get(type_url).map(|t| t.version.clone()),
            _ => None,
        }
        .unwrap_or_else(|| inputs_version.to_owned());
        let prev = previous.map(|p| &p.resources);
        let mut types = BTreeMap::new();
        types.insert(
            type_url::CLUSTER,
            TypedResources::new(
                version_of(prev.is_some_and(|p| p.clusters == resources.clusters), type_url::CLUSTER),
                resources.clusters.iter().map(|c| (c.name.clone(), to_any(c))).collect(),
            ),
        );
        types.insert(
            type_url::ENDPOINT,
            TypedResources::new(
                version_of(prev.is_some_and(|p| p.endpoints == resources.endpoints), type_url::ENDPOINT),
                resources.endpoints.iter().map(|e| (e.cluster_name.clone(), to_any(e))).collect(),
            ),
        );
        types.insert(
            type_url::LISTENER,
            TypedResources::new(
                version_of(prev.is_some_and(|p| p.listeners == resources.listeners), type_url::LISTENER),
                resources.listeners.iter().map(|l| (l.name.clone(), to_any(l))).collect(),
            ),
        );
        types.insert(
            type_url::ROUTE,
            TypedResources::new(
                version_of(prev.is_some_and(|p| p.routes == resources.routes), type_url::ROUTE),
                resources.routes.iter().map(|r| (r.name.clone(), to_any(r))).collect(),
            ),
        );
        types.insert(
            type_url::EXTENSION_CONFIG,
            TypedResources::new(
                version_of(
                    prev.is_some_and(|p| p.extension_configs == resources.extension_configs),
                    type_url::EXTENSION_CONFIG,
                ),
                resources.extension_configs.iter().map(|e| (e.name.clone(), to_any(e))).collect(),
            ),
        );
        types.insert(
            type_url::SECRET,
            TypedResources::new(
                version_of(prev.is_some_and(|p| p.secrets == resources.secrets), type_url::SECRET),
                resources.secrets.iter().map(|s| (s.name.clone(), to_any(s))).collect(),
            ),
        );
        let joined: Vec<&str> = types.values().map(|t| t.version.as_str()).collect();
        let version = crate::hash::short_hash(joined.join(",").as_bytes());
        Ok(Self { version, registry_version: registry_version.to_owned(), types, origins: Default::default(), resources })
    }
}

/// Every name a resource refers to exists in the snapshot, so Envoy never waits on a
/// resource that will not come, nor routes to a cluster it does not have.
pub fn check_consistent(resources: &Resources) -> Result<(), InconsistentSnapshot> {
    let endpoint_names: BTreeSet<&str> = resources.endpoints.iter().map(|e| e.cluster_name.as_str()).collect();
    let cluster_names: BTreeSet<&str> = resources.clusters.iter().map(|c| c.name.as_str()).collect();
    let route_names: BTreeSet<&str> = resources.routes.iter().map(|r| r.name.as_str()).collect();
    let extension_types: BTreeMap<&str, &str> = resources
        .extension_configs
        .iter()
        .map(|e| (e.name.as_str(), e.typed_config.as_ref().map(|a| a.type_url.as_str()).unwrap_or_default()))
        .collect();
    for cluster in &resources.clusters {
        let is_eds = cluster.cluster_discovery_type == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32));
        if is_eds {
            let service = cluster
                .eds_cluster_config
                .as_ref()
                .map(|e| if e.service_name.is_empty() { cluster.name.as_str() } else { e.service_name.as_str() })
                .unwrap_or(cluster.name.as_str());
            if !endpoint_names.contains(service) {
                return Err(InconsistentSnapshot::MissingEndpoints {
                    cluster: cluster.name.clone(),
                    service: service.to_owned(),
                });
            }
        }
    }
    for listener in &resources.listeners {
        for chain in &listener.filter_chains {
            for f in &chain.filters {
                let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else { continue };
                if any.type_url != type_url::HTTP_CONNECTION_MANAGER {
                    continue;
                }
                let hcm = HttpConnectionManager::decode(any.value.as_slice())
                    .map_err(|_| InconsistentSnapshot::BadListener { listener: listener.name.clone() })?;
                if let Some(RouteSpecifier::Rds(rds)) = &hcm.route_specifier {
                    if !route_names.contains(rds.route_config_name.as_str()) {
                        return Err(InconsistentSnapshot::MissingRouteConfig {
                            listener: listener.name.clone(),
                            route_config: rds.route_config_name.clone(),
                        });
                    }
                }
                check_discovered_filters(&listener.name, &hcm, &extension_types)?;
            }
        }
    }
    check_routes(resources, &cluster_names)?;
    check_secrets(resources)
}

/// A listener or cluster naming a secret over SDS warms until the secret comes: every such
/// name must be in the snapshot. Secrets named without an SDS source are the bootstrap's
/// static ones (the Envoy's own certificate and the CA).
fn check_secrets(resources: &Resources) -> Result<(), InconsistentSnapshot> {
    use envoy_types::pb::envoy::config::core::v3::{transport_socket, TransportSocket};
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        common_tls_context::ValidationContextType, CommonTlsContext, DownstreamTlsContext, UpstreamTlsContext,
    };
    let secret_names: BTreeSet<&str> = resources.secrets.iter().map(|s| s.name.as_str()).collect();
    let common = |owner: &str, socket: &TransportSocket| -> Result<Option<CommonTlsContext>, InconsistentSnapshot> {
        let Some(transport_socket::ConfigType::TypedConfig(any)) = &socket.config_type else { return Ok(None) };
        let bad = || InconsistentSnapshot::BadTlsContext { owner: owner.to_owned() };
        match any.type_url.as_str() {
            type_url::DOWNSTREAM_TLS_CONTEXT => {
                Ok(DownstreamTlsContext::decode(any.value.as_slice()).map_err(|_| bad())?.common_tls_context)
            }
            type_url::UPSTREAM_TLS_CONTEXT => Ok(UpstreamTlsContext::decode(any.value.as_slice()).map_err(|_| bad())?.common_tls_context),
            _ => Ok(None),
        }
    };
    let check = |owner: String, socket: Option<&TransportSocket>| -> Result<(), InconsistentSnapshot> {
        let Some(context) = socket.map(|s| common(&owner, s)).transpose()?.flatten() else { return Ok(()) };
        let validation = match &context.validation_context_type {
            Some(ValidationContextType::ValidationContextSdsSecretConfig(c)) => Some(c),
            Some(ValidationContextType::CombinedValidationContext(c)) => c.validation_context_sds_secret_config.as_ref(),
            _ => None,
        };
        for config in context.tls_certificate_sds_secret_configs.iter().chain(validation) {
            if config.sds_config.is_some() && !secret_names.contains(config.name.as_str()) {
                return Err(InconsistentSnapshot::MissingSecret { owner, secret: config.name.clone() });
            }
        }
        Ok(())
    };
    for listener in &resources.listeners {
        for chain in listener.filter_chains.iter().chain(&listener.default_filter_chain) {
            check(format!("listener {} chain {}", listener.name, chain.name), chain.transport_socket.as_ref())?;
        }
    }
    for cluster in &resources.clusters {
        check(format!("cluster {}", cluster.name), cluster.transport_socket.as_ref())?;
    }
    Ok(())
}

/// A filter given by `config_discovery` would keep its listener warming (and then refuse
/// every request) if its ECDS resource were missing or of a type the filter does not accept.
fn check_discovered_filters(
    listener: &str,
    hcm: &HttpConnectionManager,
    extension_types: &BTreeMap<&str, &str>,
) -> Result<(), InconsistentSnapshot> {
    for f in &hcm.http_filters {
        let Some(http_filter::ConfigType::ConfigDiscovery(source)) = &f.config_type else { continue };
        let Some(found) = extension_types.get(f.name.as_str()) else {
            return Err(InconsistentSnapshot::MissingExtensionConfig { listener: listener.to_owned(), filter: f.name.clone() });
        };
        if !source.type_urls.iter().any(|t| t == found) {
            return Err(InconsistentSnapshot::ExtensionConfigType {
                listener: listener.to_owned(),
                filter: f.name.clone(),
                accepted: source.type_urls.clone(),
                found: (*found).to_owned(),
            });
        }
    }
    Ok(())
}

fn check_routes(resources: &Resources, cluster_names: &BTreeSet<&str>) -> Result<(), InconsistentSnapshot> {
    for rc in &resources.routes {
        for vh in &rc.virtual_hosts {
            for r in &vh.routes {
                if let Some(route::Action::Route(action)) = &r.action {
                    if let Some(route_action::ClusterSpecifier::Cluster(cluster)) = &action.cluster_specifier {
                        if !cluster_names.contains(cluster.as_str()) {
                            return Err(InconsistentSnapshot::MissingCluster {
                                route: r.name.clone(),
                                cluster: cluster.clone(),
                            });
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
