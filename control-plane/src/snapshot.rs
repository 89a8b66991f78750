//! A snapshot: one consistent set of resources of the six xDS types, each type with its
//! own version so an unchanged type is never re-sent, each resource with its own content
//! hash so delta xDS sends only the resources that changed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;
use imbl::ordmap::DiffItem;
use imbl::OrdMap;

use crate::consistency::{check_references, Names, References};
pub use crate::consistency::InconsistentSnapshot;
use crate::translate::{EncodedResources, Resources, TranslateCache, Translation};

/// The resources of one xDS type at one version, by name. The maps are persistent: the
/// next snapshot shares every entry that did not change.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedResources {
    pub version: String,
    /// Shared with the translation that made them (and the next snapshot, when unchanged).
    pub resources: OrdMap<String, Arc<Any>>,
    /// A content hash per resource: what delta xDS compares with what an Envoy holds.
    pub hashes: OrdMap<String, String>,
}

impl TypedResources {
    fn new(encoded: &EncodedResources, version: &str) -> Self {
        Self {
            version: version.to_owned(),
            resources: encoded.iter().map(|(name, e)| (name.clone(), e.any.clone())).collect(),
            hashes: encoded.iter().map(|(name, e)| (name.clone(), e.hash.clone())).collect(),
        }
    }

    /// `typed` with the differences between the resources it was made from and `now`
    /// applied: an instance change copies one resource (and the few tree nodes above it).
    fn patched(typed: &TypedResources, changes: Vec<DiffItem<'_, '_, String, Arc<crate::translate::Encoded>>>, version: &str) -> Self {
        let mut next = typed.clone();
        next.version = version.to_owned();
        for change in changes {
            match change {
                DiffItem::Add(name, encoded) | DiffItem::Update { new: (name, encoded), .. } => {
                    next.resources.insert(name.clone(), encoded.any.clone());
                    next.hashes.insert(name.clone(), encoded.hash.clone());
                }
                DiffItem::Remove(name, _) => {
                    next.resources.remove(name);
                    next.hashes.remove(name);
                }
            }
        }
        next
    }
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Identifies the whole snapshot: derived from the six type versions.
    pub version: String,
    /// The registry version this snapshot was built from.
    pub registry_version: String,
    /// Shared with the next snapshot when a type did not change.
    pub types: BTreeMap<&'static str, Arc<TypedResources>>,
    /// Which registry entry each resource comes from, for NACKs (the translation's).
    pub origins: Arc<crate::translate::origins::Origins>,
    /// What the next translation reuses.
    pub cache: TranslateCache,
    /// The translation this snapshot was made from: the next snapshot tells what changed
    /// by comparing its maps with these, and checks only that.
    translation: Translation,
}

impl Snapshot {
    /// Builds a snapshot from a translation and the cache it left. `inputs_version`
    /// identifies what it was made from; a type whose resources equal the previous
    /// snapshot's keeps the previous version (and its resources, shared), so it is not
    /// pushed again.
    pub fn build(
        translation: Translation,
        cache: TranslateCache,
        registry_version: &str,
        inputs_version: &str,
        previous: Option<&Snapshot>,
    ) -> Result<Self, InconsistentSnapshot> {
        match previous {
            Some(p) => translation.check_since(&p.translation)?,
            None => translation.check()?,
        }
        let mut types = BTreeMap::new();
        for (type_url, encoded) in &translation.types {
            let previous_type = previous.and_then(|p| Some((p.types.get(type_url)?, p.translation.types.get(type_url)?)));
            let typed = match previous_type {
                Some((typed, before)) => {
                    let changes: Vec<_> = before.diff(encoded).collect();
                    if changes.is_empty() {
                        typed.clone()
                    } else {
                        Arc::new(TypedResources::patched(typed, changes, inputs_version))
                    }
                }
                None => Arc::new(TypedResources::new(encoded, inputs_version)),
            };
            types.insert(*type_url, typed);
        }
        let joined: Vec<&str> = types.values().map(|t| t.version.as_str()).collect();
        let version = crate::hash::short_hash(joined.join(",").as_bytes());
        Ok(Self {
            version,
            registry_version: registry_version.to_owned(),
            types,
            origins: Arc::new(translation.origins.clone()),
            cache,
            translation,
        })
    }
}

/// Every name a resource refers to exists in the snapshot, so Envoy never waits on a
/// resource that will not come, nor routes to a cluster it does not have.
pub fn check_consistent(resources: &Resources) -> Result<(), InconsistentSnapshot> {
    let endpoints: HashSet<&str> = resources.endpoints.iter().map(|e| e.cluster_name.as_str()).collect();
    let clusters: HashSet<&str> = resources.clusters.iter().map(|c| c.name.as_str()).collect();
    let routes: HashSet<&str> = resources.routes.iter().map(|r| r.name.as_str()).collect();
    let secrets: HashSet<&str> = resources.secrets.iter().map(|s| s.name.as_str()).collect();
    let names = Names {
        endpoints: &endpoints,
        clusters: &clusters,
        routes: &routes,
        secrets: &secrets,
        extension_types: resources
            .extension_configs
            .iter()
            .map(|e| (e.name.as_str(), e.typed_config.as_ref().map(|a| a.type_url.as_str()).unwrap_or_default()))
            .collect(),
    };
    let mut references = References::of_clusters(&resources.clusters)?;
    references.extend(References::of_route_configurations(&resources.routes));
    references.extend(References::of_listeners(&resources.listeners)?);
    check_references(&resources.listeners, [&references], &names)
}
