//! Incremental translation: the cost of a change grows with the change, not the registry.
//!
//! Each service's resources (its cluster, its endpoints, its routes, its part of the filter
//! config) are made once, encoded, hashed, and kept in a [`TranslateCache`] with the inputs
//! they were made from. The next translation visits only the services whose registry entry
//! or live instances differ from those the cache was made from: the registry's services
//! are a persistent map shared with the registry they were edited from (or rebased on,
//! `Registry::rebased_on`), so `OrdMap::diff` finds an edit of one service of 10,000
//! without comparing the other 9,999. When something every service's pieces depend on
//! changed (the cached paths, upstream TLS), or a registry shares nothing with the
//! cache's, every service is compared with its cached entry instead; either way the
//! cached pieces are reused, by `Arc`, where the inputs are equal.
//!
//! Every map a translation hands on (resources by name, what they refer to, where they come
//! from, the routes in order) is persistent (`imbl::OrdMap`): the next translation starts
//! from the previous one's maps, a copy that costs nothing, and changes only the entries of
//! the services that changed. So an unchanged service costs nothing, and the snapshot
//! finds what changed with `OrdMap::diff`, which skips the shared parts.
//!
//! Pure: `(registry, instances, retired, options, previous cache) -> (resources, cache)`;
//! with an empty cache it is the cold translation, and the two give byte-identical
//! resources (`incremental_tests.rs` proves it for random edit sequences, with registries
//! rebased and parsed).
//!
//! What aggregates every service is kept cheap:
//! - The route configuration is one resource, rebuilt by one copy of every service's
//!   pre-encoded routes joined in runs (`route_pieces.rs`, `joined.rs`).
//! - The filter config (ECDS) is reused when no service's part of it and none of the
//!   globals changed (an instance or a traffic change); otherwise its JSON is the services'
//!   parts joined the same way, and the filter's check runs on the new parts alone when
//!   the globals are the cached ones, the new parts' prefixes are their own
//!   (`prefix_counts`) and no composite or cached route reads across services; else on the
//!   whole config (which also names the first error, in the services' order).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::google::protobuf::Any;
use imbl::ordmap::DiffItem;
use imbl::OrdMap;
use prost::Name;

use super::origins::{self, OriginKey, Origins};
use super::route_pieces::{route_pieces, EncodedTarget, RoutePieces, RouteTargets, TargetKey};
use super::filter_config::{ServicePart, ServiceParts};
use super::{cluster, edge_tls, names, route, to_any};
use super::{TranslateError, TranslateOptions};
use crate::consistency::{check_references, InconsistentSnapshot, Names, References};
use crate::registry::edge::UpstreamTls;
use crate::registry::{InstanceSpec, LiveInstances, Registry, ServiceSpec, Services};
use crate::resources::type_url;
use crate::xds::ledger::RegistryEntry;

mod filter_pieces;
mod pieces;
mod source;

pub use filter_pieces::revocation;
use filter_pieces::{filter_pieces, FilterPieces};
use pieces::{endpoint_pieces, service_pieces};
use source::Source;

/// One resource as it goes out: encoded once, with its content hash (what delta xDS
/// compares with what an Envoy holds).
#[derive(Debug)]
pub struct Encoded {
    pub any: Arc<Any>,
    pub hash: String,
}

/// Equal content hashes of the same type are equal resources (versions are content
/// hashes, compared for equality only): what `OrdMap::diff` compares resources by, without
/// reading their bytes.
impl PartialEq for Encoded {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.any, &other.any) || (self.hash == other.hash && self.any.type_url == other.any.type_url)
    }
}

impl Encoded {
    fn of<M: Name>(message: &M) -> Arc<Self> {
        let any = to_any(message);
        let hash = crate::hash::short_hash(&any.value);
        Arc::new(Self { any: Arc::new(any), hash })
    }
}

/// Resources by name, per xDS type.
pub type EncodedTypes = BTreeMap<&'static str, EncodedResources>;

/// One type's resources by name; persistent, so the next translation shares what did not
/// change.
pub type EncodedResources = OrdMap<String, Arc<Encoded>>;

/// What a translation made: every resource, encoded, what the snapshot checks them with,
/// and where each comes from in the registry.
#[derive(Debug, Clone)]
pub struct Translation {
    pub types: EncodedTypes,
    /// Which registry entry each resource comes from, for NACKs.
    pub origins: Origins,
    /// The listeners decoded (there are one or two): their RDS and ECDS names are checked.
    listeners: Arc<Vec<Listener>>,
    /// The names the global resources refer to (the control plane's and retired clusters,
    /// the gateway's routes, the listeners' secrets).
    global_references: Arc<References>,
    /// The names each service's resources refer to, by service.
    references: OrdMap<String, Arc<References>>,
    /// ECDS name -> the type URL of its config.
    extension_types: BTreeMap<String, String>,
}

impl Translation {
    /// Every name a resource refers to exists in the translation (see
    /// [`crate::snapshot::check_consistent`], the same check on decoded resources).
    pub fn check(&self) -> Result<(), InconsistentSnapshot> {
        self.check_groups(self.references.iter().map(|(_, r)| &**r))
    }

    /// [`Self::check`] where `before` (already checked) may have been: when no name of
    /// `before` is gone, a reference that resolved there resolves here too, so only the
    /// services whose references changed, the global ones and the listeners are checked.
    pub fn check_since(&self, before: &Translation) -> Result<(), InconsistentSnapshot> {
        let name_gone = before.types.iter().any(|(type_url, was)| match self.types.get(type_url) {
            Some(now) => was.diff(now).any(|d| matches!(d, DiffItem::Remove(..))),
            None => !was.is_empty(),
        });
        if name_gone {
            return self.check();
        }
        let changed: Vec<&References> = before
            .references
            .diff(&self.references)
            .filter_map(|d| match d {
                DiffItem::Add(_, r) | DiffItem::Update { new: (_, r), .. } => Some(&**r),
                DiffItem::Remove(..) => None,
            })
            .collect();
        self.check_groups(changed)
    }

    fn check_groups<'r, I>(&'r self, services: I) -> Result<(), InconsistentSnapshot>
    where
        I: IntoIterator<Item = &'r References>,
        I::IntoIter: Clone,
    {
        let empty = EncodedResources::new();
        let of = |t: &str| self.types.get(t).unwrap_or(&empty);
        let names = Names {
            endpoints: of(type_url::ENDPOINT),
            clusters: of(type_url::CLUSTER),
            routes: of(type_url::ROUTE),
            secrets: of(type_url::SECRET),
            extension_types: self.extension_types.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect(),
        };
        let groups = std::iter::once(&*self.global_references).chain(services);
        check_references(&self.listeners, groups, &names)
    }
}

/// The pieces of the previous translation, and what each was made from.
#[derive(Debug, Clone, Default)]
pub struct TranslateCache {
    services: OrdMap<String, Arc<ServicePieces>>,
    endpoints: OrdMap<String, Arc<EndpointPieces>>,
    /// The registry's services' resources gathered from the pieces above, kept so the next
    /// translation patches them instead of gathering 10,000 entries again.
    own: OwnResources,
    filter: Option<Arc<FilterPieces>>,
    routes: Option<Arc<RoutePieces>>,
    last: Option<Arc<LastTranslation>>,
    source: Option<Arc<Source>>,
}

/// What the registry's services make, by name, without the global resources (which are
/// added to copies of these maps: few, and made whole each time).
#[derive(Debug, Clone, Default)]
struct OwnResources {
    clusters: EncodedResources,
    /// By cluster name, as the EDS resources are named.
    endpoints: EncodedResources,
    references: OrdMap<String, Arc<References>>,
    origins: Origins,
    /// Every service's route targets in the route configuration's order.
    targets: RouteTargets,
    /// How many times the services' filter parts list each prefix (once, in a config the
    /// filter compiles): what tells an edit's new prefixes from another service's.
    prefix_counts: OrdMap<String, usize>,
    /// Every service's filter part by name, joined as the filter config lists them.
    service_parts: ServiceParts,
}

impl OwnResources {
    fn count_prefixes(&mut self, part: &ServicePart, added: bool) {
        for prefix in &part.config.prefixes {
            let count = self.prefix_counts.get(prefix).copied().unwrap_or(0);
            match (added, count) {
                (true, n) => {
                    self.prefix_counts.insert(prefix.clone(), n + 1);
                }
                (false, 0 | 1) => {
                    self.prefix_counts.remove(prefix);
                }
                (false, n) => {
                    self.prefix_counts.insert(prefix.clone(), n - 1);
                }
            }
        }
    }
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
    /// The live instances the cached endpoints were made with (what the next translation
    /// compares its own with, [`Source::changed_services`]).
    live: LiveInstances,
    translation: Translation,
}

/// One service's cluster, routes and part of the filter config, and the registry entry
/// (with its upstream TLS) they were made from.
#[derive(Debug)]
struct ServicePieces {
    /// The registry entry (shared with the registry: no copy), whose instances none of
    /// these pieces is made of.
    spec: Arc<ServiceSpec>,
    tls: Option<UpstreamTls>,
    /// The registry's cached paths under the service's route prefixes: its routes answer
    /// `X-Cache: BYPASS` for them, so they are part of what the pieces were made from.
    cached_paths: Vec<String>,
    cluster: Arc<Encoded>,
    /// Per target prefix, its routes encoded as `VirtualHost.routes` entries, and their hash.
    targets: Vec<Arc<EncodedTarget>>,
    filter: Arc<ServicePart>,
    references: Arc<References>,
    origins: Vec<(OriginKey, RegistryEntry)>,
}

impl ServicePieces {
    fn target_keys(&self) -> impl Iterator<Item = TargetKey> + '_ {
        self.targets.iter().enumerate().map(|(i, t)| (Reverse(t.prefix.len()), t.prefix.clone(), self.spec.name.clone(), i))
    }

    fn same_routes(&self, other: &ServicePieces) -> bool {
        self.targets.len() == other.targets.len()
            && self.targets.iter().zip(&other.targets).all(|(x, y)| x.prefix == y.prefix && x.hash == y.hash)
    }
}

/// One service's endpoints, and the instances they were made from.
#[derive(Debug)]
struct EndpointPieces {
    /// The registry entry its static instances are (shared with the registry).
    spec: Arc<ServiceSpec>,
    live: Option<BTreeSet<InstanceSpec>>,
    encoded: Arc<Encoded>,
}

/// What changed among the services' pieces, for the aggregates made of all of them.
#[derive(Default)]
struct Changed {
    /// A service's part of the filter config, or the set of services.
    filter: bool,
    /// The filter parts made by this translation, unless `no_part_cached`; every other
    /// part is a cached one, which compiled without error when it was made.
    new_parts: Vec<Arc<ServicePart>>,
    /// Nothing was cached (a cold translation): every part is new.
    no_part_cached: bool,
    /// A service's routes, or the set of services.
    routes: bool,
}

impl Changed {
    /// Whether each part (by address) is one that compiled before: what the whole filter
    /// check asks of each of 10,000 parts.
    fn compiled_before(&self) -> impl Fn(&ServicePart) -> bool + '_ {
        let new: BTreeSet<*const ServicePart> = self.new_parts.iter().map(Arc::as_ptr).collect();
        move |part| !self.no_part_cached && !new.contains(&std::ptr::from_ref(part))
    }
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
    let mut next = TranslateCache { services: cache.services.clone(), endpoints: cache.endpoints.clone(), own: cache.own.clone(), ..Default::default() };
    let mut changed = Changed { no_part_cached: cache.services.is_empty(), ..Changed::default() };
    let cached_paths = route::cached_paths(registry);
    let since = cache.source.as_ref().zip(cache.last.as_ref());
    match since.and_then(|(source, last)| source.changed_services(registry, &cached_paths, &last.live, live)) {
        // Only the services that differ: the others' pieces are the cached ones as they are.
        Some(names) => {
            for name in &names {
                match registry.services.get(name) {
                    Some(svc) => {
                        let cached = (cache.services.get(name), cache.endpoints.get(name));
                        next.visit(svc, registry, live, &cached_paths, cached, &mut changed)?;
                    }
                    None => next.forget(name, cache.services.get(name), &mut changed),
                }
            }
        }
        None => {
            let mut cached_services = Lockstep::new(&cache.services);
            let mut cached_endpoints = Lockstep::new(&cache.endpoints);
            for (name, svc) in &registry.services {
                let cached = (cached_services.take(name), cached_endpoints.take(name));
                next.visit(svc, registry, live, &cached_paths, cached, &mut changed)?;
            }
            for (name, gone) in cached_services.rest() {
                next.remove_service(name, gone, &mut changed);
            }
            for (name, _) in cached_endpoints.rest() {
                next.own.endpoints.remove(&names::cluster(name));
                next.endpoints.remove(name);
            }
        }
    }
    next.source = Some(Arc::new(Source::of(registry, &cached_paths)));

    // The resources every service shares, made whole each time: few and small.
    let mut clusters = next.own.clusters.clone();
    let mut endpoints = next.own.endpoints.clone();
    let mut origins = next.own.origins.clone();
    let mut global_clusters: Vec<Cluster> = retired.iter().copied().map(cluster::cluster).collect();
    for svc in &retired {
        endpoints.insert(names::cluster(&svc.name), Encoded::of(&cluster::load_assignment(svc, live.get(&svc.name))));
        origins.extend(origins::service_origins(svc, false));
    }
    origins.extend(origins::shared_origins());
    global_clusters.extend(super::global_clusters(registry, options));
    let mut global_references = References::of_clusters(&global_clusters)?;
    for c in &global_clusters {
        clusters.insert(c.name.clone(), Encoded::of(c));
    }
    let gateway_routes = route::gateway_routes(registry);
    global_references.extend(References::of_routes(&gateway_routes));
    let listeners = edge_tls::listeners(options, registry);
    global_references.extend(References::of_listeners(&listeners)?);

    let filter = filter_pieces(registry, options, &next.services, &mut next.own, &changed, cache.filter.as_ref())?;
    let extension_types = BTreeMap::from([(names::FILTER_EXTENSION_CONFIG.to_owned(), filter.type_url.clone())]);
    let extension_configs = EncodedResources::from_iter([(names::FILTER_EXTENSION_CONFIG.to_owned(), filter.encoded.clone())]);
    next.filter = Some(filter);

    let routes = route_pieces(registry, &gateway_routes, &mut next.own.targets, changed.routes, cache.routes.as_ref());
    let route_configuration = routes.encoded.clone();
    next.routes = Some(routes);
    let mut types = EncodedTypes::new();
    types.insert(type_url::CLUSTER, clusters);
    types.insert(type_url::ENDPOINT, endpoints);
    types.insert(type_url::LISTENER, listeners.iter().map(|l| (l.name.clone(), Encoded::of(l))).collect());
    types.insert(type_url::ROUTE, EncodedResources::from_iter([(names::ROUTE_CONFIG.to_owned(), route_configuration)]));
    types.insert(type_url::EXTENSION_CONFIG, extension_configs);
    types.insert(type_url::SECRET, edge_tls::secrets(registry).iter().map(|s| (s.name.clone(), Encoded::of(s))).collect());
    let translation = Translation {
        types,
        origins,
        listeners: Arc::new(listeners),
        global_references: Arc::new(global_references),
        references: next.own.references.clone(),
        extension_types,
    };
    next.last = Some(Arc::new(LastTranslation {
        registry_version: registry.version.clone(),
        keys: registry.keys.clone(),
        options: options_key,
        retired: retired.iter().copied().cloned().collect(),
        live: live.clone(),
        translation: translation.clone(),
    }));
    Ok((translation, next))
}

impl TranslateCache {
    /// The services of the registry the pieces were made from (after a translation).
    pub fn registry_services(&self) -> Option<&Services> {
        self.source.as_ref().map(|s| &s.services)
    }

    /// Service `svc`'s pieces and endpoints, the cached ones (`cached`) where its inputs did
    /// not change, in every map made of them.
    fn visit(
        &mut self,
        svc: &Arc<ServiceSpec>,
        registry: &Registry,
        live: &LiveInstances,
        cached_paths: &[&str],
        cached: (Option<&Arc<ServicePieces>>, Option<&Arc<EndpointPieces>>),
        changed: &mut Changed,
    ) -> Result<(), InconsistentSnapshot> {
        let name = &svc.name;
        let (cached_service, cached_endpoints) = cached;
        let pieces = service_pieces(svc, registry.upstream_tls.get(name), cached_paths, cached_service)?;
        if !cached_service.is_some_and(|c| Arc::ptr_eq(c, &pieces)) {
            self.replace_service(name, cached_service.map(|c| &**c), pieces, changed);
        }
        let own = endpoint_pieces(svc, live.get(name), cached_endpoints);
        if !cached_endpoints.is_some_and(|c| Arc::ptr_eq(c, &own)) {
            self.own.endpoints.insert(names::cluster(name), own.encoded.clone());
            self.endpoints.insert(name.clone(), own);
        }
        Ok(())
    }

    /// Service `name`, gone from the registry (its pieces `gone`, if it had any), and its
    /// endpoints.
    fn forget(&mut self, name: &str, gone: Option<&Arc<ServicePieces>>, changed: &mut Changed) {
        if let Some(gone) = gone {
            self.remove_service(name, gone, changed);
        }
        self.own.endpoints.remove(&names::cluster(name));
        self.endpoints.remove(name);
    }

    /// `now` in place of `before` (absent for a new service) in every map made of them.
    fn replace_service(&mut self, name: &str, before: Option<&ServicePieces>, now: Arc<ServicePieces>, changed: &mut Changed) {
        let own = &mut self.own;
        if !before.is_some_and(|b| Arc::ptr_eq(&b.filter, &now.filter)) {
            changed.filter = true;
            if !changed.no_part_cached {
                changed.new_parts.push(now.filter.clone());
            }
            if let Some(before) = before {
                own.count_prefixes(&before.filter, false);
            }
            own.count_prefixes(&now.filter, true);
            own.service_parts.insert(name.to_owned(), now.filter.clone());
        }
        if !before.is_some_and(|b| b.same_routes(&now)) {
            changed.routes = true;
            for key in before.into_iter().flat_map(ServicePieces::target_keys) {
                own.targets.remove(&key);
            }
            for (key, target) in now.target_keys().zip(now.targets.iter().cloned()) {
                own.targets.insert(key, target);
            }
        }
        for (key, _) in before.into_iter().flat_map(|b| &b.origins) {
            own.origins.remove(key);
        }
        own.origins.extend(now.origins.iter().cloned());
        own.clusters.insert(names::cluster(name), now.cluster.clone());
        own.references.insert(name.to_owned(), now.references.clone());
        self.services.insert(name.to_owned(), now);
    }

    /// A service gone from the registry, from every map made of the services.
    fn remove_service(&mut self, name: &str, gone: &ServicePieces, changed: &mut Changed) {
        changed.filter = true;
        changed.routes = true;
        let own = &mut self.own;
        own.count_prefixes(&gone.filter, false);
        own.service_parts.remove(&name.to_owned());
        own.clusters.remove(&names::cluster(name));
        own.references.remove(name);
        for (key, _) in &gone.origins {
            own.origins.remove(key);
        }
        for key in gone.target_keys() {
            own.targets.remove(&key);
        }
        self.services.remove(name);
    }
}

/// A walk of a cached map beside the registry's services, both in name order: each
/// service's cached value in one step, and what is left over (services gone) at the end.
struct Lockstep<'a, V> {
    cached: std::iter::Peekable<imbl::ordmap::Iter<'a, String, V, imbl::shared_ptr::DefaultSharedPtr>>,
    gone: Vec<(&'a String, &'a V)>,
}

impl<'a, V: Clone> Lockstep<'a, V> {
    fn new(cached: &'a OrdMap<String, V>) -> Self {
        Self { cached: cached.iter().peekable(), gone: Vec::new() }
    }

    /// The cached value of `name`; names must come in ascending order.
    fn take(&mut self, name: &str) -> Option<&'a V> {
        while let Some((cached, value)) = self.cached.next_if(|(cached, _)| cached.as_str() < name) {
            self.gone.push((cached, value));
        }
        self.cached.next_if(|(cached, _)| cached.as_str() == name).map(|(_, value)| value)
    }

    /// The cached entries no name took.
    fn rest(mut self) -> Vec<(&'a String, &'a V)> {
        self.gone.extend(self.cached);
        self.gone
    }
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
    let mut translation = last.translation.clone();
    let mut next = cache.clone();
    if let Some(endpoints) = translation.types.get_mut(type_url::ENDPOINT) {
        for name in changed {
            if let Some(svc) = registry.services.get(name) {
                let own = endpoint_pieces(svc, live.get(name), cache.endpoints.get(name));
                endpoints.insert(names::cluster(name), own.encoded.clone());
                next.own.endpoints.insert(names::cluster(name), own.encoded.clone());
                next.endpoints.insert(name.clone(), own);
            } else if let Some(svc) = retired.iter().find(|s| s.name == *name) {
                endpoints.insert(names::cluster(name), Encoded::of(&cluster::load_assignment(svc, live.get(name))));
            }
        }
    }
    next.last = Some(Arc::new(LastTranslation {
        registry_version: last.registry_version.clone(),
        keys: last.keys.clone(),
        options: last.options.clone(),
        retired: last.retired.clone(),
        live: live.clone(),
        translation: translation.clone(),
    }));
    (translation, next)
}
