//! A snapshot: one consistent set of resources of the six xDS types, each type with its
//! own version so an unchanged type is never re-sent, each resource with its own content
//! hash so delta xDS sends only the resources that changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;

use crate::consistency::{check_references, Names, References};
pub use crate::consistency::InconsistentSnapshot;
use crate::resources::type_url;
use crate::translate::{EncodedResources, EncodedTypes, Resources, TranslateCache, Translation};

/// The resources of one xDS type at one version, by name.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedResources {
    pub version: String,
    /// Shared with the translation that made them (and the next snapshot, when unchanged).
    pub resources: BTreeMap<String, Arc<Any>>,
    /// A content hash per resource: what delta xDS compares with what an Envoy holds.
    pub hashes: BTreeMap<String, String>,
}

impl TypedResources {
    /// `typed` (made from `before`) with the resources `now` has and `before` has not the
    /// same of, and without those `now` lacks: an instance change copies one resource.
    fn patched(typed: &TypedResources, before: &EncodedResources, now: &EncodedResources, version: &str) -> Self {
        let mut next = typed.clone();
        next.version = version.to_owned();
        next.resources.retain(|name, _| now.contains_key(name));
        next.hashes.retain(|name, _| now.contains_key(name));
        for (name, encoded) in now {
            if before.get(name).is_some_and(|b| Arc::ptr_eq(b, encoded)) {
                continue;
            }
            next.resources.insert(name.clone(), encoded.any.clone());
            next.hashes.insert(name.clone(), encoded.hash.clone());
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
    /// Which registry entry each resource comes from, for NACKs (set by `build_snapshot`).
    pub origins: std::sync::Arc<crate::translate::origins::Origins>,
    /// What the origins were made from (the registry's version and the retired services).
    pub origins_key: String,
    /// What the next translation reuses.
    pub cache: TranslateCache,
    /// The encoded resources of each type, as the translation made them: the next
    /// snapshot tells an unchanged resource by pointer.
    encoded: EncodedTypes,
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
        if !previous.is_some_and(|p| checked_before(&p.encoded, &translation.types)) {
            translation.check()?;
        }
        let mut types = BTreeMap::new();
        for (type_url, encoded) in &translation.types {
            let previous_type = previous.and_then(|p| Some((p.types.get(type_url)?, p.encoded.get(type_url)?)));
            let typed = match previous_type {
                Some((typed, before)) if same_content(before, encoded) => typed.clone(),
                // Made again from the previous type's: only the changed names are copied.
                Some((typed, before)) => Arc::new(TypedResources::patched(typed, before, encoded, inputs_version)),
                _ => Arc::new(TypedResources {
                    version: inputs_version.to_owned(),
                    resources: encoded.iter().map(|(name, e)| (name.clone(), e.any.clone())).collect(),
                    hashes: encoded.iter().map(|(name, e)| (name.clone(), e.hash.clone())).collect(),
                }),
            };
            types.insert(*type_url, typed);
        }
        let joined: Vec<&str> = types.values().map(|t| t.version.as_str()).collect();
        let version = crate::hash::short_hash(joined.join(",").as_bytes());
        Ok(Self {
            version,
            registry_version: registry_version.to_owned(),
            types,
            origins: Default::default(),
            origins_key: String::new(),
            cache,
            encoded: translation.types,
        })
    }
}

/// Whether the previous snapshot's consistency check holds for `now` too: every type but
/// the endpoints is the previous one's (shared, so made by the same translation with the
/// same references), and the endpoints have the same names (only their instances changed).
fn checked_before(before: &EncodedTypes, now: &EncodedTypes) -> bool {
    before.len() == now.len()
        && before.iter().zip(now).all(|((a_type, a), (b_type, b))| {
            a_type == b_type && (Arc::ptr_eq(a, b) || (*a_type == type_url::ENDPOINT && a.keys().eq(b.keys())))
        })
}

/// The same names with the same content: the same pieces (a pointer compare), or equal
/// hashes for a piece made again.
fn same_content(before: &EncodedResources, now: &EncodedResources) -> bool {
    if std::ptr::eq(before, now) {
        return true;
    }
    before.len() == now.len()
        && before.iter().zip(now).all(|((a_name, a), (b_name, b))| a_name == b_name && (Arc::ptr_eq(a, b) || a.hash == b.hash))
}

/// Every name a resource refers to exists in the snapshot, so Envoy never waits on a
/// resource that will not come, nor routes to a cluster it does not have.
pub fn check_consistent(resources: &Resources) -> Result<(), InconsistentSnapshot> {
    let names = Names {
        endpoints: resources.endpoints.iter().map(|e| e.cluster_name.as_str()).collect(),
        clusters: resources.clusters.iter().map(|c| c.name.as_str()).collect(),
        routes: resources.routes.iter().map(|r| r.name.as_str()).collect(),
        secrets: resources.secrets.iter().map(|s| s.name.as_str()).collect(),
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
