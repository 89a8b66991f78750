//! What resources name of one another, and the check that every such name exists, so
//! Envoy never waits on a resource that will not come nor routes to a cluster it lacks.
//! Gathered per group of resources where they are made (translate/incremental.rs, per
//! service), checked against a snapshot's names (snapshot.rs); its own file so both use it
//! without importing each other.

use std::collections::{BTreeMap, HashSet};

use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{transport_socket, TransportSocket};
use envoy_types::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_types::pb::envoy::config::route::v3::{route, route_action, Route, RouteConfiguration};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, CommonTlsContext, DownstreamTlsContext, UpstreamTlsContext,
};
use prost::Message;

use crate::resources::type_url;
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

/// The names a snapshot holds, by type: what references are checked against.
pub struct Names<'a> {
    pub endpoints: &'a dyn NameSet,
    pub clusters: &'a dyn NameSet,
    pub routes: &'a dyn NameSet,
    pub secrets: &'a dyn NameSet,
    /// ECDS resource name -> the type URL of its config.
    pub extension_types: BTreeMap<&'a str, &'a str>,
}

/// Names a reference may resolve to: a set gathered from decoded resources, or the
/// translation's own map of a type (looked up where it is, not copied into a set).
pub trait NameSet {
    fn has(&self, name: &str) -> bool;
}

impl NameSet for HashSet<&str> {
    fn has(&self, name: &str) -> bool {
        self.contains(name)
    }
}

impl<V: Clone> NameSet for imbl::OrdMap<String, V> {
    fn has(&self, name: &str) -> bool {
        self.contains_key(name)
    }
}

/// What a group of resources names of other resources: gathered once when the group is
/// made (incremental translation keeps them with each service's pieces), checked against
/// every snapshot's [`Names`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct References {
    /// (cluster, the EDS resource it waits for).
    endpoints: Vec<(String, String)>,
    /// (route, the cluster it sends traffic to).
    clusters: Vec<(String, String)>,
    /// (owner, a secret it names over SDS).
    secrets: Vec<(String, String)>,
}

impl References {
    pub fn extend(&mut self, other: References) {
        self.endpoints.extend(other.endpoints);
        self.clusters.extend(other.clusters);
        self.secrets.extend(other.secrets);
    }

    pub fn of_clusters(clusters: &[Cluster]) -> Result<Self, InconsistentSnapshot> {
        let mut references = Self::default();
        for cluster in clusters {
            let is_eds = cluster.cluster_discovery_type == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32));
            if is_eds {
                let service = cluster
                    .eds_cluster_config
                    .as_ref()
                    .map(|e| if e.service_name.is_empty() { cluster.name.as_str() } else { e.service_name.as_str() })
                    .unwrap_or(cluster.name.as_str());
                references.endpoints.push((cluster.name.clone(), service.to_owned()));
            }
            references.secrets_of(format!("cluster {}", cluster.name), cluster.transport_socket.as_ref())?;
        }
        Ok(references)
    }

    pub fn of_route_configurations(routes: &[RouteConfiguration]) -> Self {
        let each = routes.iter().flat_map(|rc| &rc.virtual_hosts).flat_map(|vh| &vh.routes);
        Self::of_routes(each)
    }

    pub fn of_routes<'r>(routes: impl IntoIterator<Item = &'r Route>) -> Self {
        let mut references = Self::default();
        for r in routes {
            if let Some(route::Action::Route(action)) = &r.action {
                if let Some(route_action::ClusterSpecifier::Cluster(cluster)) = &action.cluster_specifier {
                    references.clusters.push((r.name.clone(), cluster.clone()));
                }
            }
        }
        references
    }

    pub fn of_listeners(listeners: &[Listener]) -> Result<Self, InconsistentSnapshot> {
        let mut references = Self::default();
        for listener in listeners {
            for chain in listener.filter_chains.iter().chain(&listener.default_filter_chain) {
                references.secrets_of(format!("listener {} chain {}", listener.name, chain.name), chain.transport_socket.as_ref())?;
            }
        }
        Ok(references)
    }

    /// Secrets named without an SDS source are the bootstrap's static ones (the Envoy's
    /// own certificate and the CA): only those over SDS must be in the snapshot.
    fn secrets_of(&mut self, owner: String, socket: Option<&TransportSocket>) -> Result<(), InconsistentSnapshot> {
        let Some(context) = socket.map(|s| common_tls_context(&owner, s)).transpose()?.flatten() else { return Ok(()) };
        let validation = match &context.validation_context_type {
            Some(ValidationContextType::ValidationContextSdsSecretConfig(c)) => Some(c),
            Some(ValidationContextType::CombinedValidationContext(c)) => c.validation_context_sds_secret_config.as_ref(),
            _ => None,
        };
        for config in context.tls_certificate_sds_secret_configs.iter().chain(validation) {
            if config.sds_config.is_some() {
                self.secrets.push((owner.clone(), config.name.clone()));
            }
        }
        Ok(())
    }
}

fn common_tls_context(owner: &str, socket: &TransportSocket) -> Result<Option<CommonTlsContext>, InconsistentSnapshot> {
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &socket.config_type else { return Ok(None) };
    let bad = || InconsistentSnapshot::BadTlsContext { owner: owner.to_owned() };
    match any.type_url.as_str() {
        type_url::DOWNSTREAM_TLS_CONTEXT => Ok(DownstreamTlsContext::decode(any.value.as_slice()).map_err(|_| bad())?.common_tls_context),
        type_url::UPSTREAM_TLS_CONTEXT => Ok(UpstreamTlsContext::decode(any.value.as_slice()).map_err(|_| bad())?.common_tls_context),
        _ => Ok(None),
    }
}

/// Checks every group of references, and the listeners' own (RDS and ECDS, which only
/// listeners make), against the snapshot's names: EDS first, then listeners, routes and
/// secrets, so the first fault reported is the one Envoy would stall on first.
pub fn check_references<'r>(
    listeners: &[Listener],
    groups: impl IntoIterator<Item = &'r References> + Clone,
    names: &Names<'_>,
) -> Result<(), InconsistentSnapshot> {
    for references in groups.clone() {
        if let Some((cluster, service)) = references.endpoints.iter().find(|(_, s)| !names.endpoints.has(s)) {
            return Err(InconsistentSnapshot::MissingEndpoints { cluster: cluster.clone(), service: service.clone() });
        }
    }
    check_listeners(listeners, names)?;
    for references in groups.clone() {
        if let Some((route, cluster)) = references.clusters.iter().find(|(_, c)| !names.clusters.has(c)) {
            return Err(InconsistentSnapshot::MissingCluster { route: route.clone(), cluster: cluster.clone() });
        }
    }
    for references in groups {
        if let Some((owner, secret)) = references.secrets.iter().find(|(_, s)| !names.secrets.has(s)) {
            return Err(InconsistentSnapshot::MissingSecret { owner: owner.clone(), secret: secret.clone() });
        }
    }
    Ok(())
}

fn check_listeners(listeners: &[Listener], names: &Names<'_>) -> Result<(), InconsistentSnapshot> {
    for listener in listeners {
        for chain in &listener.filter_chains {
            for f in &chain.filters {
                let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else { continue };
                if any.type_url != type_url::HTTP_CONNECTION_MANAGER {
                    continue;
                }
                let hcm = HttpConnectionManager::decode(any.value.as_slice())
                    .map_err(|_| InconsistentSnapshot::BadListener { listener: listener.name.clone() })?;
                if let Some(RouteSpecifier::Rds(rds)) = &hcm.route_specifier {
                    if !names.routes.has(&rds.route_config_name) {
                        return Err(InconsistentSnapshot::MissingRouteConfig {
                            listener: listener.name.clone(),
                            route_config: rds.route_config_name.clone(),
                        });
                    }
                }
                check_discovered_filters(&listener.name, &hcm, &names.extension_types)?;
            }
        }
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
