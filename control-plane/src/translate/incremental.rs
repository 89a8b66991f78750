//! Incremental translation: the cost of a change grows with the change, not the registry.
//!
//! Each service's resources (its cluster, its endpoints, its routes, its part of the filter
//! config) are made once, encoded, hashed, and kept in a [`TranslateCache`] with the inputs
//! they were made from. The next translation compares each service's registry entry (and
//! its instances) with the cached one and reuses the cached pieces, by `Arc`, when they are
//! equal, so an unchanged service costs a comparison and a pointer copy.
//!
//! Pure: `(registry, instances, retired, options, previous cache) -> (resources, cache)`;
//! with an empty cache it is the cold translation, and the two give byte-identical
//! resources (`incremental_tests.rs` proves it for random edit sequences).
//!
//! What aggregates every service is kept cheap:
//! - The route configuration is one resource (one virtual host whose routes are every
//!   service's, longest prefix first). Each service keeps its routes pre-encoded as entries
//!   of `VirtualHost.routes` (a protobuf repeated field is the concatenation of its
//!   entries), so the resource is rebuilt by sorting prefixes and concatenating bytes; its
//!   content hash is the hash of the pieces' hashes, not of its megabytes.
//! - The filter config (ECDS) is reused when no service's part of it and none of the
//!   globals changed (an instance or a traffic change); otherwise it is rebuilt and compiled
//!   whole, because the filter compiles it whole (prefix conflicts, composites across
//!   services).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use stagedoor_filter_core::config::{FilterConfig, RevocationConfig, ServiceConfig};

use super::{check, cluster, cors, edge_tls, extension_config, filter_config, names, route, to_any};
use super::{TranslateError, TranslateOptions};
use crate::registry::edge::UpstreamTls;
use crate::registry::{InstanceSpec, LiveInstances, Registry, ServiceSpec};
use crate::resources::type_url;
use crate::consistency::{check_references, InconsistentSnapshot, Names, References};

/// One resource as it goes out: encoded once, with its content hash (what delta xDS
/// compares with what an Envoy holds).
#[derive(Debug, PartialEq)]
pub struct Encoded {
    pub any: Arc<Any>,
    pub hash: String,
}

impl Encoded {
    fn of<M: Name>(message: &M) -> Arc<Self> {
        let any = to_any(message);
        let hash = crate::hash::short_hash(&any.value);
        Arc::new(Self { any: Arc::new(any), hash })
    }
}

/// Resources by name, per xDS type.
pub type EncodedTypes = BTreeMap<&'static str, Arc<EncodedResources>>;

/// One type's resources by name; shared, whole, with the next translation when unchanged.
pub type EncodedResources = BTreeMap<String, Arc<Encoded>>;

/// What a translation made: every resource, encoded, and what the snapshot checks them with.
#[derive(Debug)]
pub struct Translation {
    pub types: EncodedTypes,
    /// The listeners decoded (there are one or two): their RDS and ECDS names are checked.
    listeners: Vec<Listener>,
    /// The names every group of resources refers to: the global resources' first, then
    /// each service's (kept with its pieces).
    references: Arc<Vec<Arc<References>>>,
    /// ECDS name -> the type URL of its config.
    extension_types: BTreeMap<String, String>,
}

impl Translation {
    /// Every name a resource refers to exists in the translation (see
    /// [`crate::snapshot::check_consistent`], the same check on decoded resources).
    pub fn check(&self) -> Result<(), InconsistentSnapshot> {
        let keys = |t: &str| self.types.get(t).into_iter().flat_map(|m| m.keys().map(String::as_str));
        let names = Names {
            endpoints: keys(type_url::ENDPOINT).collect(),
            clusters: keys(type_url::CLUSTER).collect(),
            routes: keys(type_url::ROUTE).collect(),
            secrets: keys(type_url::SECRET).collect(),
            extension_types: self.extension_types.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect(),
        };
        check_references(&self.listeners, self.references.iter().map(|r| &**r), &names)
    }
}

/// The pieces of the previous translation, and what each was made from.
#[derive(Debug, Clone, Default)]
pub struct TranslateCache {
    services: Arc<BTreeMap<String, Arc<ServicePieces>>>,
    endpoints: Arc<BTreeMap<String, Arc<EndpointPieces>>>,
    filter: Option<Arc<FilterPieces>>,
    routes: Option<Arc<RoutePieces>>,
    last: Option<Arc<LastTranslation>>,
}

/// The whole previous translation, and everything it was made from but the registry's
/// services' instances: when only live instances changed (what discovery reports), it is
/// reused as it is but for the endpoints of the services whose instances changed, so an
/// instance change costs its service, not the registry.
#[derive(Debug)]
struct LastTranslation {
    /// A content hash of the registry (`Registry::version`)...
    registry_version: String,
    /// ...which does not cover the keys fetched from JWKS URLs, merged in after parsing.
    keys: Vec<stagedoor_filter_core::config::KeyConfig>,
    options: String,
    retired: Vec<ServiceSpec>,
    live: LiveInstances,
    types: EncodedTypes,
    listeners: Vec<Listener>,
    references: Arc<Vec<Arc<References>>>,
    extension_types: BTreeMap<String, String>,
}

/// The route configuration, and what it was made from: the virtual host's own bytes (all
/// but the services' routes) and each service's pieces, in order.
#[derive(Debug)]
struct RoutePieces {
    /// The virtual host's head, the gateway's own routes, the virtual host's tail.
    frame: [Vec<u8>; 3],
    services: Vec<Arc<ServicePieces>>,
    encoded: Arc<Encoded>,
}

/// One service's cluster, routes and part of the filter config, and the registry entry
/// (with its upstream TLS) they were made from.
#[derive(Debug)]
struct ServicePieces {
    spec: ServiceSpec,
    tls: Option<UpstreamTls>,
    /// The registry's cached paths under the service's route prefixes: its routes answer
    /// `X-Cache: BYPASS` for them, so they are part of what the pieces were made from.
    cached_paths: Vec<String>,
    cluster: Arc<Encoded>,
    /// Per target prefix, its routes encoded as `VirtualHost.routes` entries, and their hash.
    targets: Vec<EncodedTarget>,
    filter: Arc<ServiceConfig>,
    references: Arc<References>,
}

#[derive(Debug)]
struct EncodedTarget {
    prefix: String,
    routes: Vec<u8>,
    hash: String,
}

/// One service's endpoints, and the instances they were made from.
#[derive(Debug)]
struct EndpointPieces {
    statics: Vec<InstanceSpec>,
    live: Option<BTreeSet<InstanceSpec>>,
    encoded: Arc<Encoded>,
}

/// The filter config's ECDS resource, and what it was made from.
#[derive(Debug)]
struct FilterPieces {
    globals: FilterConfig,
    wasm_path: String,
    services: Vec<Arc<ServiceConfig>>,
    encoded: Arc<Encoded>,
    type_url: String,
}

/// `registry` translated, reusing from `cache` every piece whose inputs did not change.
/// `live` and `retired` as for [`super::translate`], whose resources this makes, encoded.
pub fn translate_incremental(
    registry: &Registry,
    live: &LiveInstances,
    retired: &[&ServiceSpec],
    options: &TranslateOptions,
    cache: &TranslateCache,
) -> Result<(Translation, TranslateCache), TranslateError> {
    let retired: Vec<&ServiceSpec> = retired.iter().copied().filter(|s| !registry.services.contains_key(&s.name)).collect();
    let options_key = format!("{options:?}");
    if let Some(last) = &cache.last {
        let same_inputs = last.registry_version == registry.version
            && last.keys == registry.keys
            && last.options == options_key
            && last.retired.len() == retired.len()
            && last.retired.iter().zip(&retired).all(|(a, b)| a == *b);
        if same_inputs {
            return Ok(instances_changed(registry, live, &retired, cache, last));
        }
    }
    let mut next = TranslateCache::default();
    let mut services = BTreeMap::new();
    let mut endpoint_cache = BTreeMap::new();
    let mut clusters = BTreeMap::new();
    let mut endpoints = BTreeMap::new();
    let mut references = Vec::with_capacity(registry.services.len() + 1);
    let cached_paths = route::cached_paths(registry);
    for (name, svc) in &registry.services {
        let pieces = service_pieces(svc, registry.upstream_tls.get(name), &cached_paths, cache.services.get(name))?;
        clusters.insert(names::cluster(name), pieces.cluster.clone());
        references.push(pieces.references.clone());
        services.insert(name.clone(), pieces);
        let own = endpoint_pieces(svc, live.get(name), cache.endpoints.get(name));
        endpoints.insert(names::cluster(name), own.encoded.clone());
        endpoint_cache.insert(name.clone(), own);
    }
    next.services = Arc::new(services);
    next.endpoints = Arc::new(endpoint_cache);

    // The resources every service shares, made whole each time: few and small.
    let mut global_clusters: Vec<Cluster> = retired.iter().copied().map(cluster::cluster).collect();
    for svc in &retired {
        endpoints.insert(names::cluster(&svc.name), Encoded::of(&cluster::load_assignment(svc, live.get(&svc.name))));
    }
    global_clusters.extend(super::global_clusters(registry, options));
    let mut global_references = References::of_clusters(&global_clusters)?;
    for c in &global_clusters {
        clusters.insert(c.name.clone(), Encoded::of(c));
    }
    let gateway_routes = route::gateway_routes(registry);
    global_references.extend(References::of_routes(&gateway_routes));
    let listeners = edge_tls::listeners(options, registry);
    global_references.extend(References::of_listeners(&listeners)?);
    references.insert(0, Arc::new(global_references));

    let filter = filter_pieces(registry, options, &next.services, cache.filter.as_ref())?;
    let extension_types = BTreeMap::from([(names::FILTER_EXTENSION_CONFIG.to_owned(), filter.type_url.clone())]);
    let extension_configs = BTreeMap::from([(names::FILTER_EXTENSION_CONFIG.to_owned(), filter.encoded.clone())]);
    next.filter = Some(filter);

    let routes = route_pieces(registry, &gateway_routes, &next.services, cache.routes.as_ref());
    let route_configuration = routes.encoded.clone();
    next.routes = Some(routes);
    let mut types = EncodedTypes::new();
    types.insert(type_url::CLUSTER, Arc::new(clusters));
    types.insert(type_url::ENDPOINT, Arc::new(endpoints));
    types.insert(type_url::LISTENER, Arc::new(listeners.iter().map(|l| (l.name.clone(), Encoded::of(l))).collect()));
    types.insert(type_url::ROUTE, Arc::new(BTreeMap::from([(names::ROUTE_CONFIG.to_owned(), route_configuration)])));
    types.insert(type_url::EXTENSION_CONFIG, Arc::new(extension_configs));
    types.insert(type_url::SECRET, Arc::new(edge_tls::secrets(registry).iter().map(|s| (s.name.clone(), Encoded::of(s))).collect()));
    let translation = Translation { types, listeners, references: Arc::new(references), extension_types };
    next.last = Some(Arc::new(LastTranslation {
        registry_version: registry.version.clone(),
        keys: registry.keys.clone(),
        options: options_key,
        retired: retired.iter().copied().cloned().collect(),
        live: live.clone(),
        types: translation.types.clone(),
        listeners: translation.listeners.clone(),
        references: translation.references.clone(),
        extension_types: translation.extension_types.clone(),
    }));
    Ok((translation, next))
}

/// The previous translation with the endpoints of each service whose live instances
/// changed made again, and nothing else touched.
fn instances_changed(
    registry: &Registry,
    live: &LiveInstances,
    retired: &[&ServiceSpec],
    cache: &TranslateCache,
    last: &LastTranslation,
) -> (Translation, TranslateCache) {
    let changed: BTreeSet<&String> = last
        .live
        .iter()
        .filter(|(name, instances)| live.get(*name) != Some(*instances))
        .map(|(name, _)| name)
        .chain(live.iter().filter(|(name, instances)| last.live.get(*name) != Some(*instances)).map(|(name, _)| name))
        .collect();
    let mut types = last.types.clone();
    let mut endpoint_cache = cache.endpoints.clone();
    if let Some(endpoints) = types.get_mut(type_url::ENDPOINT) {
        let endpoints = Arc::make_mut(endpoints);
        for name in changed {
            if let Some(svc) = registry.services.get(name) {
                let own = endpoint_pieces(svc, live.get(name), cache.endpoints.get(name));
                endpoints.insert(names::cluster(name), own.encoded.clone());
                Arc::make_mut(&mut endpoint_cache).insert(name.clone(), own);
            } else if let Some(svc) = retired.iter().find(|s| s.name == *name) {
                endpoints.insert(names::cluster(name), Encoded::of(&cluster::load_assignment(svc, live.get(name))));
            }
        }
    }
    let translation = Translation {
        types,
        listeners: last.listeners.clone(),
        references: last.references.clone(),
        extension_types: last.extension_types.clone(),
    };
    let next = TranslateCache {
        services: cache.services.clone(),
        endpoints: endpoint_cache,
        filter: cache.filter.clone(),
        routes: cache.routes.clone(),
        last: Some(Arc::new(LastTranslation {
            registry_version: last.registry_version.clone(),
            keys: last.keys.clone(),
            options: last.options.clone(),
            retired: last.retired.clone(),
            live: live.clone(),
            types: translation.types.clone(),
            listeners: last.listeners.clone(),
            references: last.references.clone(),
            extension_types: last.extension_types.clone(),
        })),
    };
    (translation, next)
}

fn service_pieces(
    svc: &ServiceSpec,
    tls: Option<&UpstreamTls>,
    registry_cached_paths: &[&str],
    cached: Option<&Arc<ServicePieces>>,
) -> Result<Arc<ServicePieces>, InconsistentSnapshot> {
    let under_service = |path: &&str| svc.routes.iter().any(|r| stagedoor_filter_core::path::is_under_prefix(path, &r.prefix));
    let cached_paths: Vec<&str> = registry_cached_paths.iter().copied().filter(under_service).collect();
    if let Some(cached) = cached.filter(|c| c.spec == *svc && c.tls.as_ref() == tls && c.cached_paths == cached_paths) {
        return Ok(cached.clone());
    }
    let mut cluster = cluster::cluster(svc);
    cluster.transport_socket = tls.map(|tls| edge_tls::upstream_socket(&svc.name, tls));
    let mut references = References::of_clusters(std::slice::from_ref(&cluster))?;
    let mut targets = Vec::new();
    for target in route::targets(svc, &cached_paths) {
        let routes = route::service_routes(&target);
        references.extend(References::of_routes(&routes));
        let mut bytes = Vec::new();
        for r in &routes {
            prost::encoding::message::encode(VIRTUAL_HOST_ROUTES_TAG, r, &mut bytes);
        }
        let hash = crate::hash::short_hash(&bytes);
        targets.push(EncodedTarget { prefix: target.prefix, routes: bytes, hash });
    }
    let filter = filter_config::service_config(svc);
    // Equal parts keep the cached one, so the filter config's reuse is a pointer compare.
    let filter = match cached {
        Some(c) if *c.filter == filter => c.filter.clone(),
        _ => Arc::new(filter),
    };
    Ok(Arc::new(ServicePieces {
        spec: svc.clone(),
        tls: tls.cloned(),
        cached_paths: cached_paths.iter().map(|p| (*p).to_owned()).collect(),
        cluster: Encoded::of(&cluster),
        targets,
        filter,
        references: Arc::new(references),
    }))
}

fn endpoint_pieces(
    svc: &ServiceSpec,
    live: Option<&BTreeSet<InstanceSpec>>,
    cached: Option<&Arc<EndpointPieces>>,
) -> Arc<EndpointPieces> {
    if let Some(cached) = cached.filter(|c| c.statics == svc.instances && c.live.as_ref() == live) {
        return cached.clone();
    }
    Arc::new(EndpointPieces {
        statics: svc.instances.clone(),
        live: live.cloned(),
        encoded: Encoded::of(&cluster::load_assignment(svc, live)),
    })
}

/// The filter config, checked by the filter's own compiler, unless nothing it is made of
/// changed since the cached one was.
fn filter_pieces(
    registry: &Registry,
    options: &TranslateOptions,
    services: &BTreeMap<String, Arc<ServicePieces>>,
    cached: Option<&Arc<FilterPieces>>,
) -> Result<Arc<FilterPieces>, TranslateError> {
    let globals = filter_config::global_filter_config(registry, revocation(options));
    let parts: Vec<Arc<ServiceConfig>> = services.values().map(|p| p.filter.clone()).collect();
    if let Some(cached) = cached {
        let same_parts = cached.services.len() == parts.len() && cached.services.iter().zip(&parts).all(|(a, b)| Arc::ptr_eq(a, b));
        if same_parts && cached.globals == globals && cached.wasm_path == extension_config::module_path(options, &globals.auth) {
            return Ok(cached.clone());
        }
    }
    // Check before publish: the control plane refuses what the filter would, and keeps
    // the last good snapshot.
    let config = check(registry, revocation(options))?;
    let extension = extension_config::stagedoor_filter_config(options, &config);
    let type_url = extension.typed_config.as_ref().map(|a| a.type_url.clone()).unwrap_or_default();
    Ok(Arc::new(FilterPieces {
        globals,
        wasm_path: extension_config::module_path(options, &config.auth).to_owned(),
        services: parts,
        encoded: Encoded::of(&extension),
        type_url,
    }))
}

/// The revocation feed the filter polls, when the control plane's HTTP side is known.
pub fn revocation(options: &TranslateOptions) -> Option<RevocationConfig> {
    options.control_plane_http.as_ref().map(|_| RevocationConfig {
        cluster: names::CONTROL_PLANE_CLUSTER.to_owned(),
        authority: String::from("stagedoor-control-plane"),
        path: String::from(names::REVOCATION_FEED_PATH),
        poll_interval_ms: stagedoor_filter_core::config::DEFAULT_POLL_INTERVAL_MS,
        wait_ms: stagedoor_filter_core::feed_poll::DEFAULT_WAIT_MS,
    })
}

/// `VirtualHost.routes` (`repeated Route routes = 3`).
const VIRTUAL_HOST_ROUTES_TAG: u32 = 3;
/// `RouteConfiguration.virtual_hosts` (`repeated VirtualHost virtual_hosts = 2`).
const ROUTE_CONFIGURATION_VIRTUAL_HOSTS_TAG: u32 = 2;

/// The one route configuration from the services' pre-encoded routes: the bytes prost
/// would write for [`route::route_configuration`]'s message. Prost writes fields in their
/// declaration order, and `VirtualHost` declares `name` and `domains` before `routes`: so
/// the head (those two), the routes, then the rest of the virtual host.
///
/// Reused whole when no service's pieces and nothing of the virtual host changed (an
/// instance change, an edit of a service's cluster or filter part only).
fn route_pieces(
    registry: &Registry,
    gateway_routes: &[envoy_types::pb::envoy::config::route::v3::Route],
    services: &BTreeMap<String, Arc<ServicePieces>>,
    cached: Option<&Arc<RoutePieces>>,
) -> Arc<RoutePieces> {
    let full = route::virtual_host(registry.cors.as_ref().map(cors::policy));
    let head = VirtualHost { name: full.name.clone(), domains: full.domains.clone(), ..Default::default() };
    let tail = VirtualHost { name: String::new(), domains: Vec::new(), ..full };
    let mut gateway = Vec::new();
    for r in gateway_routes {
        prost::encoding::message::encode(VIRTUAL_HOST_ROUTES_TAG, r, &mut gateway);
    }
    let frame = [head.encode_to_vec(), gateway, tail.encode_to_vec()];
    let pieces: Vec<Arc<ServicePieces>> = services.values().cloned().collect();
    if let Some(cached) = cached {
        // A service whose pieces were made again may have the same routes (its cluster or
        // filter part changed): compared by their hashes.
        let same_routes = |a: &ServicePieces, b: &ServicePieces| {
            a.targets.len() == b.targets.len() && a.targets.iter().zip(&b.targets).all(|(x, y)| x.prefix == y.prefix && x.hash == y.hash)
        };
        let same_services = cached.services.len() == pieces.len()
            && cached.services.iter().zip(&pieces).all(|(a, b)| Arc::ptr_eq(a, b) || same_routes(a, b));
        if same_services && cached.frame == frame {
            return Arc::new(RoutePieces { frame, services: pieces, encoded: cached.encoded.clone() });
        }
    }
    let mut targets: Vec<&EncodedTarget> = pieces.iter().flat_map(|p| &p.targets).collect();
    route::sort_targets(&mut targets, |t| &t.prefix);
    let [head, gateway, tail] = &frame;
    let routes_len: usize = targets.iter().map(|t| t.routes.len()).sum();
    let mut virtual_host = Vec::with_capacity(head.len() + gateway.len() + routes_len + tail.len());
    virtual_host.extend_from_slice(head);
    virtual_host.extend_from_slice(gateway);
    for t in &targets {
        virtual_host.extend_from_slice(&t.routes);
    }
    virtual_host.extend_from_slice(tail);

    let mut value = RouteConfiguration { name: names::ROUTE_CONFIG.to_owned(), ..Default::default() }.encode_to_vec();
    prost::encoding::encode_key(ROUTE_CONFIGURATION_VIRTUAL_HOSTS_TAG, prost::encoding::WireType::LengthDelimited, &mut value);
    prost::encoding::encode_varint(virtual_host.len() as u64, &mut value);
    value.reserve(virtual_host.len());
    value.extend_from_slice(&virtual_host);

    // Hashing the pieces' hashes instead of the megabytes: equal pieces in equal order
    // are equal bytes, and versions are compared for equality only.
    let mut hashed = Vec::with_capacity(head.len() + gateway.len() + tail.len() + 24 + 17 * targets.len());
    for part in &frame {
        hashed.extend_from_slice(&(part.len() as u64).to_le_bytes());
        hashed.extend_from_slice(part);
    }
    for t in &targets {
        hashed.extend_from_slice(t.hash.as_bytes());
        hashed.push(b',');
    }
    let hash = crate::hash::short_hash(&hashed);
    let encoded = Arc::new(Encoded { any: Arc::new(Any { type_url: RouteConfiguration::type_url(), value }), hash });
    Arc::new(RoutePieces { frame, services: pieces, encoded })
}
