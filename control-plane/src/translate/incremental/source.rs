//! What a translation cache's pieces were made from, registry-wide, and which services the
//! next translation must visit.

use std::collections::{BTreeMap, BTreeSet};

use imbl::ordmap::DiffItem;

use crate::registry::edge::UpstreamTls;
use crate::registry::{LiveInstances, Registry, Services};

/// What the pieces above were made from, registry-wide: the next translation compares its
/// inputs with these and, when only services or instances differ, visits only the services
/// that differ (a persistent map's diff skips what two registries share: an edit of one
/// service of 10,000 visits one), instead of walking every service beside the cache.
#[derive(Debug)]
pub(super) struct Source {
    pub(super) services: Services,
    cached_paths: Vec<String>,
    upstream_tls: BTreeMap<String, UpstreamTls>,
}

impl Source {
    pub(super) fn of(registry: &Registry, cached_paths: &[&str]) -> Self {
        Self {
            services: registry.services.clone(),
            cached_paths: cached_paths.iter().map(|p| (*p).to_owned()).collect(),
            upstream_tls: registry.upstream_tls.clone(),
        }
    }

    /// The services whose pieces may differ from the cached ones (made with live instances
    /// `cached_live`), when nothing the pieces of every service are made of changed; `None`
    /// when something did (every service is visited then).
    pub(super) fn changed_services(
        &self,
        registry: &Registry,
        cached_paths: &[&str],
        cached_live: &LiveInstances,
        live: &LiveInstances,
    ) -> Option<BTreeSet<String>> {
        let same_shared = self.cached_paths.len() == cached_paths.len()
            && self.cached_paths.iter().zip(cached_paths).all(|(a, b)| a == b)
            && self.upstream_tls == registry.upstream_tls;
        if !same_shared {
            return None;
        }
        let mut names: BTreeSet<String> = self
            .services
            .diff(&registry.services)
            .map(|d| match d {
                DiffItem::Add(name, _) | DiffItem::Remove(name, _) | DiffItem::Update { new: (name, _), .. } => name.clone(),
            })
            .collect();
        names.extend(live_changes(cached_live, live).cloned());
        Some(names)
    }
}

/// The services whose live instances differ between `before` and `now`.
fn live_changes<'a>(before: &'a LiveInstances, now: &'a LiveInstances) -> impl Iterator<Item = &'a String> {
    let gone_or_changed = before.iter().filter(|(name, instances)| now.get(*name) != Some(*instances)).map(|(name, _)| name);
    let added = now.iter().filter(|(name, _)| !before.contains_key(*name)).map(|(name, _)| name);
    gone_or_changed.chain(added)
}
