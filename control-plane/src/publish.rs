//! Registry in, snapshot out: translate, check, version, publish. Only a registry that makes
//! a consistent snapshot replaces the one Envoys are being served.

use std::sync::Arc;

use tokio::sync::watch;

use crate::discovery::LiveInstances;
use crate::registry::Registry;
use crate::snapshot::{InconsistentSnapshot, Snapshot};
use crate::translate::{translate, TranslateError, TranslateOptions};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Translate(#[from] TranslateError),
    #[error("snapshot would be inconsistent: {0}")]
    Inconsistent(#[from] InconsistentSnapshot),
}

/// Builds a snapshot; `previous` lets unchanged types keep their versions.
pub fn build_snapshot(
    registry: &Registry,
    live: &LiveInstances,
    options: &TranslateOptions,
    previous: Option<&Snapshot>,
) -> Result<Snapshot, PublishError> {
    let resources = translate(registry, live, options)?;
    let inputs_version = crate::hash::short_hash(format!("{}|{:?}|{:?}", registry.version, live, options).as_bytes());
    Ok(Snapshot::build(resources, &registry.version, &inputs_version, previous)?)
}

/// Holds the current registry and publishes snapshots to every stream.
pub struct Publisher {
    options: TranslateOptions,
    registry: Registry,
    live: LiveInstances,
    tx: watch::Sender<Arc<Snapshot>>,
}

impl Publisher {
    pub fn new(registry: Registry, options: TranslateOptions) -> Result<(Self, watch::Receiver<Arc<Snapshot>>), PublishError> {
        let live = LiveInstances::new();
        let snapshot = build_snapshot(&registry, &live, &options, None)?;
        let (tx, rx) = watch::channel(Arc::new(snapshot));
        Ok((Self { options, registry, live, tx }, rx))
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
        let current = self.current();
        let snapshot = build_snapshot(&registry, &self.live, &self.options, Some(&current))?;
        self.registry = registry;
        self.publish(snapshot, &current)
    }

    /// Replaces the live instances (from Redis). Returns whether anything changed.
    pub fn set_live_instances(&mut self, live: LiveInstances) -> Result<bool, PublishError> {
        if live == self.live {
            return Ok(false);
        }
        let current = self.current();
        let snapshot = build_snapshot(&self.registry, &live, &self.options, Some(&current))?;
        self.live = live;
        self.publish(snapshot, &current)
    }

    fn publish(&mut self, snapshot: Snapshot, current: &Snapshot) -> Result<bool, PublishError> {
        if snapshot.version == current.version {
            return Ok(false);
        }
        tracing::info!(
            registry = %snapshot.registry_version, snapshot = %snapshot.version,
            "publishing new snapshot to every connected Envoy"
        );
        self.tx.send_replace(Arc::new(snapshot));
        Ok(true)
    }
}
