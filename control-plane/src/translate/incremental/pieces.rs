//! One service's pieces (its cluster, routes and filter part) and its endpoints, made
//! again only when what they are made of differs from the cached ones.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::super::filter_config::ServicePart;
use super::super::route_pieces::EncodedTarget;
use super::super::{cluster, edge_tls, filter_config, origins, route};
use super::{Encoded, EndpointPieces, ServicePieces};
use crate::consistency::{InconsistentSnapshot, References};
use crate::registry::edge::UpstreamTls;
use crate::registry::{InstanceSpec, ServiceSpec};

pub(super) fn service_pieces(
    svc: &Arc<ServiceSpec>,
    tls: Option<&UpstreamTls>,
    registry_cached_paths: &[&str],
    cached: Option<&Arc<ServicePieces>>,
) -> Result<Arc<ServicePieces>, InconsistentSnapshot> {
    let under_service = |path: &&str| svc.routes.iter().any(|r| stagedoor_filter_core::path::is_under_prefix(path, &r.prefix));
    let cached_paths: Vec<&str> = registry_cached_paths.iter().copied().filter(under_service).collect();
    let same_spec = |c: &ServicePieces| Arc::ptr_eq(&c.spec, svc) || same_entry(&c.spec, svc);
    if let Some(cached) = cached.filter(|c| same_spec(c) && c.tls.as_ref() == tls && c.cached_paths == cached_paths) {
        return Ok(cached.clone());
    }
    let mut cluster = cluster::cluster(svc);
    cluster.transport_socket = tls.map(|tls| edge_tls::upstream_socket(&svc.name, tls));
    let mut references = References::of_clusters(std::slice::from_ref(&cluster))?;
    let mut targets = Vec::new();
    for target in route::targets(svc, &cached_paths) {
        let routes = route::service_routes(&target);
        references.extend(References::of_routes(&routes));
        targets.push(Arc::new(EncodedTarget::new(target.prefix, &routes)));
    }
    let filter = filter_config::service_config(svc);
    // Equal parts keep the cached one, so the filter config's reuse is a pointer compare.
    let filter = match cached {
        Some(c) if c.filter.config == filter => c.filter.clone(),
        _ => Arc::new(ServicePart::new(filter)),
    };
    Ok(Arc::new(ServicePieces {
        spec: svc.clone(),
        tls: tls.cloned(),
        cached_paths: cached_paths.iter().map(|p| (*p).to_owned()).collect(),
        cluster: Encoded::of(&cluster),
        targets,
        filter,
        references: Arc::new(references),
        origins: origins::service_origins(svc, tls.is_some()),
    }))
}

/// Whether `svc` is the registry entry `cached` was kept of, but for its instances.
fn same_entry(cached: &ServiceSpec, svc: &ServiceSpec) -> bool {
    // Destructured, so a field added to the entry cannot be left out of the comparison.
    let ServiceSpec {
        name,
        routes,
        instances: _,
        public_paths,
        rules,
        request_headers,
        unmatched,
        validation,
        require_signatures,
        signed_routes,
        rbac_shadow,
        traffic,
        tls,
    } = svc;
    cached.name == *name
        && cached.routes == *routes
        && cached.public_paths == *public_paths
        && cached.rules == *rules
        && cached.request_headers == *request_headers
        && cached.unmatched == *unmatched
        && cached.validation == *validation
        && cached.require_signatures == *require_signatures
        && cached.signed_routes == *signed_routes
        && cached.rbac_shadow == *rbac_shadow
        && cached.traffic == *traffic
        && cached.tls == *tls
}

pub(super) fn endpoint_pieces(
    svc: &Arc<ServiceSpec>,
    live: Option<&BTreeSet<InstanceSpec>>,
    cached: Option<&Arc<EndpointPieces>>,
) -> Arc<EndpointPieces> {
    let same_statics = |c: &EndpointPieces| Arc::ptr_eq(&c.spec, svc) || c.spec.instances == svc.instances;
    if let Some(cached) = cached.filter(|c| same_statics(c) && c.live.as_ref() == live) {
        return cached.clone();
    }
    Arc::new(EndpointPieces {
        spec: svc.clone(),
        live: live.cloned(),
        encoded: Encoded::of(&cluster::load_assignment(svc, live)),
    })
}
