//! Registry -> Envoy resources. Pure and deterministic: the same registry and options give
//! byte-identical resources, so content hashes version them.

mod any;
mod check;
mod cluster;
mod control_plane_tls;
mod cors;
mod edge_tls;
mod extension_config;
mod filter_config;
mod incremental;
mod joined;
#[cfg(test)]
mod incremental_tests;
mod listener;
mod local_reply;
mod rate_limit;
mod rate_limit_fallback;
#[cfg(test)]
mod rate_limit_fallback_tests;
mod rate_limit_global;
#[cfg(test)]
mod rate_limit_global_tests;
mod response_strip;
pub mod names;
pub mod origins;
mod route;
mod route_pieces;
#[cfg(test)]
mod token_endpoint_tests;

use std::net::SocketAddr;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;

use crate::registry::LiveInstances;
use crate::registry::{Registry, ServiceSpec};

pub use any::to_any;
pub use check::{check, load_checked, FilterConfigRefused};
pub use filter_config::filter_config;
pub use incremental::{translate_incremental, Encoded, EncodedResources, EncodedTypes, TranslateCache, Translation};
pub use rate_limit_global::DOMAIN as RATE_LIMIT_DOMAIN;

/// Deployment facts that are not in the registry: where Envoy listens, where the filter is.
#[derive(Debug, Clone)]
pub struct TranslateOptions {
    pub listen: SocketAddr,
    /// Path of the compiled filter as Envoy sees it.
    pub wasm_path: String,
    /// The HMAC-only build of it (`scripts/build-filter.sh --hmac-only`), pushed instead
    /// when every token key is an HMAC secret: smaller, so each of Envoy's VMs holds less
    /// (issue 18). None: `wasm_path` always.
    pub hmac_wasm_path: Option<String>,
    /// The control plane's HTTP address as Envoy reaches it (host, port), for the
    /// revocation feed; None turns revocation off.
    pub control_plane_http: Option<(String, u16)>,
    /// Filters reach the revocation feed over mutual TLS (off only with `--insecure`), with
    /// the certificates the Envoy's bootstrap names (see [`cluster::control_plane`]).
    pub control_plane_tls: bool,
    /// The control plane's RateLimitService as Envoy reaches it (`--ratelimit`).
    pub rate_limit_service: Option<(String, u16)>,
    /// What a registry may hold (`--max-services` and the like): checked before translating.
    pub limits: crate::registry::limits::Limits,
}

/// One full set of resources for every Envoy: the six xDS types.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub clusters: Vec<Cluster>,
    pub endpoints: Vec<ClusterLoadAssignment>,
    pub listeners: Vec<Listener>,
    pub routes: Vec<RouteConfiguration>,
    /// ECDS: the Stagedoor filter's config, which the listener's filter names.
    pub extension_configs: Vec<TypedExtensionConfig>,
    /// SDS: edge certificates and upstream TLS material, which listeners and clusters name.
    pub secrets: Vec<Secret>,
}

#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    #[error("filter config refused: {0}")]
    FilterConfig(#[from] FilterConfigRefused),
    #[error("snapshot would be inconsistent: {0}")]
    Inconsistent(#[from] crate::consistency::InconsistentSnapshot),
}

/// `live` adds instances registered in Redis to each service's static ones. `retired`
/// services were just removed from the registry: their routes are gone but their clusters
/// stay a little longer, so no request already routed to one finds it missing.
///
/// The decoded form of what [`translate_incremental`] makes (which `serve` runs): for
/// tests and tools that read the resources.
pub fn translate(
    registry: &Registry,
    live: &LiveInstances,
    retired: &[&ServiceSpec],
    options: &TranslateOptions,
) -> Result<Resources, TranslateError> {
    // Check before publish: the control plane refuses what the filter would, and keeps
    // the last good snapshot.
    let config = check(registry, incremental::revocation(options))?;
    let retired: Vec<&ServiceSpec> = retired.iter().copied().filter(|s| !registry.services.contains_key(&s.name)).collect();
    let clusters = registry
        .services
        .values()
        .map(|svc| {
            let mut c = cluster::cluster(svc);
            c.transport_socket = registry.upstream_tls.get(&svc.name).map(|tls| edge_tls::upstream_socket(&svc.name, tls));
            c
        })
        // A retired service's cluster has no TLS secret any more: it lives only seconds.
        .chain(retired.iter().copied().map(cluster::cluster))
        .chain(global_clusters(registry, options))
        .collect();
    Ok(Resources {
        clusters,
        endpoints: registry
            .services
            .values()
            .map(|svc| &**svc)
            .chain(retired.iter().copied())
            .map(|svc| cluster::load_assignment(svc, live.get(&svc.name)))
            .collect(),
        listeners: edge_tls::listeners(options, registry),
        routes: vec![route::route_configuration(registry, registry.cors.as_ref().map(cors::policy))],
        extension_configs: vec![extension_config::stagedoor_filter_config(extension_config::module_path(options, &config.auth), config.to_json())],
        secrets: edge_tls::secrets(registry),
    })
}

/// The clusters that are not a service's: the control plane's, the token endpoint's, the
/// RateLimitService's.
fn global_clusters(registry: &Registry, options: &TranslateOptions) -> Vec<Cluster> {
    let mut clusters = Vec::new();
    if let Some((host, port)) = &options.control_plane_http {
        clusters.push(cluster::control_plane(host, *port, options.control_plane_tls));
    }
    if let Some(endpoint) = &registry.token_endpoint {
        clusters.push(cluster::token_endpoint(&endpoint.address, endpoint.port, options.control_plane_tls));
    }
    // Signed requests spend each signature once in the RateLimitService (the filter's replay
    // check), so they need its cluster even without global limits.
    if registry.global_rate_limits.is_some() || registry.signed_requests.is_some() {
        clusters.push(rate_limit_global::cluster(options.rate_limit_service.as_ref(), options.control_plane_tls));
    }
    clusters
}

#[cfg(test)]
mod tests;
