//! Registry in, snapshot out: translate, check, version, publish. Only a registry that makes
//! a consistent snapshot replaces the one Envoys are being served.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::registry::limits::{Capped, OverLimit};
use crate::registry::remote_keys::RemoteKeys;
use crate::registry::LiveInstances;
use crate::registry::{Registry, ServiceSpec, Services};
use crate::snapshot::{InconsistentSnapshot, Snapshot};
use crate::translate::{translate_incremental, TranslateError, TranslateOptions};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Translate(#[from] TranslateError),
    #[error("snapshot would be inconsistent: {0}")]
    Inconsistent(#[from] InconsistentSnapshot),
    #[error(transparent)]
    OverLimit(#[from] OverLimit),
}

/// Builds a snapshot; `previous` lets unchanged types keep their versions.
pub fn build_snapshot(
    registry: &Registry,
    live: &LiveInstances,
    retired: &[&ServiceSpec],
    options: &TranslateOptions,
    previous: Option<&Snapshot>,
) -> Result<Snapshot, PublishError> {
    build_snapshot_with_keys(registry, &RemoteKeys::new(), live, retired, options, previous)
}

/// [`build_snapshot`] with the keys fetched from the registry's JWKS URLs.
pub fn build_snapshot_with_keys(
    registry: &Registry,
    remote_keys: &RemoteKeys,
    live: &LiveInstances,
    retired: &[&ServiceSpec],
    options: &TranslateOptions,
    previous: Option<&Snapshot>,
) -> Result<Snapshot, PublishError> {
    let empty = crate::translate::TranslateCache::default();
    let cache = previous.map_or(&empty, |p| &p.cache);
    // The previous snapshot's services passed the same limits (flags, fixed for the process).
    options.limits.check_since(registry, cache.registry_services())?;
    let (live, capped) = options.limits.cap_live(registry, live);
    report_capped(&capped);
    let live = live.as_ref();
    let merged = crate::registry::remote_keys::with_remote_keys(registry, remote_keys);
    let (translation, cache) = translate_incremental(&merged, live, retired, options, cache)?;
    let retired_names: Vec<&str> = retired.iter().map(|s| s.name.as_str()).collect();
    let keys_version = crate::hash::short_hash(serde_json::to_string(remote_keys).unwrap_or_default().as_bytes());
    let inputs_version = crate::hash::short_hash(
        format!("{}|{keys_version}|{:?}|{:?}|{:?}", registry.version, live, retired_names, options).as_bytes(),
    );
    Ok(Snapshot::build(translation, cache, &registry.version, &inputs_version, previous)?)
}

/// Live instances a service's limit left out: logged at each snapshot while it lasts, and
/// counted in /metrics (`stagedoor_live_instances_over_limit`).
fn report_capped(capped: &[Capped]) {
    let left_out: usize = capped.iter().map(|c| c.found - c.served).sum();
    crate::metrics::LIVE_INSTANCES_OVER_LIMIT.store(left_out as u64, std::sync::atomic::Ordering::Relaxed);
    for c in capped {
        tracing::warn!(service = %c.service, found = c.found, served = c.served, "instances over the per-service limit (--max-instances-per-service): the rest are not pushed");
    }
}

/// Holds the current registry and publishes snapshots to every stream.
/// How long a removed service's cluster outlives its routes (make before break: Envoy
/// drops the routes first, then, once nothing can be routed there, the cluster).
pub const RETIRE_AFTER: Duration = Duration::from_secs(5);

pub struct Publisher {
    options: TranslateOptions,
    registry: Registry,
    live: LiveInstances,
    /// Keys fetched from the registry's JWKS URLs, by issuer (crate::jwks).
    remote_keys: RemoteKeys,
    /// Services removed from the registry, kept as clusters until the instant given.
    retired: BTreeMap<String, (ServiceSpec, Instant)>,
    tx: watch::Sender<Arc<Snapshot>>,
}

impl Publisher {
    pub fn new(registry: Registry, options: TranslateOptions) -> Result<(Self, watch::Receiver<Arc<Snapshot>>), PublishError> {
        let live = LiveInstances::new();
        let snapshot = build_snapshot(&registry, &live, &[], &options, None)?;
        let (tx, rx) = watch::channel(Arc::new(snapshot));
        Ok((Self { options, registry, live, remote_keys: RemoteKeys::new(), retired: BTreeMap::new(), tx }, rx))
    }

    pub fn options(&self) -> &TranslateOptions {
        &self.options
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn current(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    pub fn live(&self) -> &LiveInstances {
        &self.live
    }

    /// Replaces the registry if it makes a good snapshot. Returns whether anything changed.
    pub fn apply(&mut self, registry: Registry) -> Result<bool, PublishError> {
        let registry = registry.rebased_on(&self.registry);
        let mut retired = self.retired.clone();
        let until = Instant::now() + RETIRE_AFTER;
        for spec in removed_services(&self.registry.services, &registry.services) {
            retired.insert(spec.name.clone(), (spec.clone(), until));
        }
        retired.retain(|name, _| !registry.services.contains_key(name));
        let current = self.current();
        let snapshot =
            build_snapshot_with_keys(&registry, &self.remote_keys, &self.live, &retired_specs(&retired), &self.options, Some(&current))?;
        self.registry = registry;
        self.retired = retired;
        self.publish(snapshot, &current)
    }

    /// Drops retired clusters whose time is up. Called every second.
    pub fn expire_retired(&mut self, now: Instant) -> Result<bool, PublishError> {
        let before = self.retired.len();
        self.retired.retain(|_, (_, until)| *until > now);
        if self.retired.len() == before {
            return Ok(false);
        }
        let current = self.current();
        let snapshot = self.build(&self.live, &self.remote_keys, &current)?;
        self.publish(snapshot, &current)
    }

    /// Replaces the live instances (from Redis). Returns whether anything changed.
    pub fn set_live_instances(&mut self, live: LiveInstances) -> Result<bool, PublishError> {
        if live == self.live {
            return Ok(false);
        }
        let current = self.current();
        let snapshot = self.build(&live, &self.remote_keys, &current)?;
        self.live = live;
        self.publish(snapshot, &current)
    }

    /// Replaces the keys fetched from JWKS URLs, if they make a good snapshot (a fetched
    /// kid that one of the registry's own keys has is refused). Returns whether anything
    /// changed.
    pub fn set_remote_keys(&mut self, keys: RemoteKeys) -> Result<bool, PublishError> {
        if keys == self.remote_keys {
            return Ok(false);
        }
        let current = self.current();
        let snapshot = self.build(&self.live, &keys, &current)?;
        self.remote_keys = keys;
        self.publish(snapshot, &current)
    }

    fn build(&self, live: &LiveInstances, remote_keys: &RemoteKeys, current: &Snapshot) -> Result<Snapshot, PublishError> {
        build_snapshot_with_keys(&self.registry, remote_keys, live, &retired_specs(&self.retired), &self.options, Some(current))
    }

    fn publish(&mut self, snapshot: Snapshot, current: &Snapshot) -> Result<bool, PublishError> {
        if snapshot.version == current.version {
            return Ok(false);
        }
        tracing::info!(
            registry = %snapshot.registry_version, snapshot = %snapshot.version,
            "publishing new snapshot to every connected Envoy"
        );
        crate::metrics::bump(&crate::metrics::SNAPSHOTS_PUBLISHED);
        self.tx.send_replace(Arc::new(snapshot));
        Ok(true)
    }
}

/// The services of `before` that `now` lacks: what differs between the two, which costs
/// what differs when `now` is rebased on `before` (`Registry::rebased_on`).
fn removed_services<'a>(before: &'a Services, now: &Services) -> Vec<&'a ServiceSpec> {
    before
        .diff(now)
        .filter_map(|item| match item {
            imbl::ordmap::DiffItem::Remove(_, spec) => Some(&**spec),
            _ => None,
        })
        .collect()
}

fn retired_specs(retired: &BTreeMap<String, (ServiceSpec, Instant)>) -> Vec<&ServiceSpec> {
    retired.values().map(|(spec, _)| spec).collect()
}

#[cfg(test)]
mod tests {

    use super::*;

    fn registry(services: &str) -> Registry {
        Registry::parse("r", &crate::test_support::registry_yaml(services)).unwrap()
    }

    fn cluster_names(snapshot: &Snapshot) -> Vec<String> {
        snapshot.types[crate::resources::type_url::CLUSTER].resources.keys().cloned().collect()
    }

    fn route_names(p: &Publisher) -> Vec<String> {
        crate::translate::translate(&p.registry, &p.live, &[], &p.options).unwrap().routes[0].virtual_hosts[0]
            .routes
            .iter()
            .map(|r| r.name.clone())
            .collect()
    }

    #[test]
    fn a_removed_service_loses_its_routes_at_once_and_its_cluster_later() {
        let both = "services:\n  - name: a\n    routes: [{prefix: /a}]\n  - name: b\n    routes: [{prefix: /b}]\n";
        let only_a = "services:\n  - name: a\n    routes: [{prefix: /a}]\n";
        let options = crate::test_support::translate_options(8080);
        let (mut p, rx) = Publisher::new(registry(both), options).unwrap();
        assert!(p.apply(registry(only_a)).unwrap());
        assert!(!route_names(&p).iter().any(|n| n.starts_with("b:")), "routes to b are gone");
        assert_eq!(cluster_names(&rx.borrow()), ["svc_a", "svc_b"], "b's cluster lingers");
        assert!(!p.expire_retired(Instant::now()).unwrap(), "not yet");
        assert!(p.expire_retired(Instant::now() + RETIRE_AFTER + Duration::from_millis(1)).unwrap());
        assert_eq!(cluster_names(&rx.borrow()), ["svc_a"]);
        // Coming back before expiry cancels the retirement.
        p.apply(registry(both)).unwrap();
        p.apply(registry(only_a)).unwrap();
        p.apply(registry(both)).unwrap();
        assert!(p.retired.is_empty());
    }
}
