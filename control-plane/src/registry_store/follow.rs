//! Every replica follows the registry in Redis: the channel for speed, a re-read on every
//! (re)connect for what was announced while it was away, and a slow poll as the backstop
//! for an announcement lost on a live connection. A version that fails validation here
//! (a `secret_env` this machine lacks, say) keeps this replica's last good config and is
//! shown in /status with the error.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;

use super::store;
use super::{StoreError, StoredRegistry, Written};
use crate::discovery::backoff::Backoff;
use crate::registry::Registry;
use crate::shared_publisher::SharedPublisher;
use crate::shutdown::Stop;

/// The backstop under the channel.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// What /status shows of the registry in Redis.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStatus {
    pub connected: bool,
    /// The version this replica serves (0: none from Redis yet, the file's).
    pub served_version: u64,
    /// The newest version seen in Redis.
    pub latest_version: u64,
    /// Why the latest version is not served here, if it is not.
    pub error: Option<String>,
}

#[derive(Clone, Default)]
pub struct SharedStoreStatus(Arc<Mutex<StoreStatus>>);

impl SharedStoreStatus {
    pub fn get(&self) -> StoreStatus {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn update(&self, change: impl FnOnce(&mut StoreStatus)) {
        if let Ok(mut status) = self.0.lock() {
            change(&mut status);
        }
    }
}

/// The registry store as the API and the follower share it.
#[derive(Clone)]
pub struct RegistryStore {
    pub url: String,
    /// This machine's registry file: the seed of an empty Redis, then a mirror of the
    /// version served here.
    pub file: PathBuf,
    pub status: SharedStoreStatus,
    pub keep: usize,
}

/// Seeds an empty Redis from the registry file (the first replica wins: the same CAS with
/// base 0, which every later one finds stale), then returns what Redis holds.
pub async fn seed_and_read(
    conn: &mut stagedoor_redis::Connection,
    file: &std::path::Path,
    keep: usize,
) -> Result<Option<StoredRegistry>, StoreError> {
    if store::current(conn).await?.is_none() {
        match std::fs::read_to_string(file) {
            Ok(text) => match Registry::parse(&file.display().to_string(), &text) {
                Ok(registry) => {
                    let by = format!("seed:{}", file.display());
                    match store::write(conn, 0, &registry.version, &text, &by, keep).await {
                        Ok(Written::New(v)) => tracing::info!(version = v, file = %file.display(), "empty redis seeded with the registry file"),
                        // The seed is the file every replica has: not replicated yet is no
                        // reason to stop following.
                        Err(e @ StoreError::NotReplicated { .. }) => tracing::warn!(error = %e, "empty redis seeded with the registry file"),
                        Ok(Written::Unchanged(_)) | Err(StoreError::Stale { .. }) => {
                            tracing::info!("another replica seeded redis first; following it")
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => tracing::error!(error = %e, "registry file invalid: not seeding redis with it"),
            },
            Err(e) => tracing::error!(file = %file.display(), error = %e, "registry file unreadable: not seeding redis with it"),
        }
    }
    store::current(conn).await
}

/// Parses a stored version as this replica would serve it.
pub fn parse_stored(document: &StoredRegistry) -> Result<Registry, String> {
    let name = format!("registry version {} in redis", document.version);
    let registry = crate::shared_publisher::off_the_workers(|| Registry::parse(&name, &document.yaml)).map_err(|e| e.to_string())?;
    Ok(registry)
}

/// Serves `document` unless it is already served; a refusal is kept in the status.
pub async fn serve_version(document: &StoredRegistry, publisher: &SharedPublisher, status: &SharedStoreStatus, file: &std::path::Path) {
    let version = document.version;
    status.update(|s| s.latest_version = version);
    // Equal, not older: a Redis emptied and seeded again starts over from 1.
    if status.get().served_version == version {
        return;
    }
    let applied = match parse_stored(document) {
        Ok(registry) => publisher.update(|p| p.apply(registry)).await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match applied {
        Ok(changed) => {
            tracing::info!(version, registry = %document.hash, changed, "registry version from redis served");
            mirror(file, &document.yaml);
            status.update(|s| {
                s.served_version = version;
                s.error = None;
            });
        }
        Err(e) => {
            crate::metrics::bump(&crate::metrics::REGISTRY_EDITS_REJECTED);
            tracing::error!(version, error = %e, "registry version from redis refused here; keeping last good config");
            status.update(|s| s.error = Some(format!("version {version}: {e}")));
        }
    }
}

/// Writes the served version to this machine's file (write, then rename): an edit then
/// starts from it. A failure only costs the mirror, so it is logged, not fatal.
pub fn mirror(file: &std::path::Path, yaml: &str) {
    let current = std::fs::read_to_string(file).ok();
    if current.as_deref() == Some(yaml) {
        return;
    }
    let tmp = file.with_extension("mirroring");
    if let Err(e) = std::fs::write(&tmp, yaml).and_then(|()| std::fs::rename(&tmp, file)) {
        tracing::warn!(file = %file.display(), error = %e, "could not mirror the served registry to the file");
    }
}

/// Runs until the stop: reconnects with backoff after any loss.
pub async fn follow(store: RegistryStore, seed: PathBuf, publisher: SharedPublisher, stop: Stop) {
    let mut backoff = Backoff::default();
    while !stop.is_requested() {
        let mut synced = false;
        let error = match run(&store, &seed, &publisher, &stop, &mut synced).await {
            Ok(()) => String::from("connection closed"),
            Err(e) => e.to_string(),
        };
        store.status.update(|s| s.connected = false);
        if stop.is_requested() {
            return;
        }
        tracing::warn!(%error, "registry in redis unavailable; serving the last version read");
        if synced {
            backoff.reset();
        }
        if crate::discovery::backoff::wait_to_retry(&store.url, &mut backoff, &stop).await == crate::discovery::backoff::Waited::Stop {
            return;
        }
    }
}

async fn run(store: &RegistryStore, seed: &std::path::Path, publisher: &SharedPublisher, stop: &Stop, synced: &mut bool) -> Result<(), StoreError> {
    let primary = stagedoor_redis::open(&store.url)?.primary(store::TIMEOUT).await?;
    let mut conn = primary.connect().await?;
    let mut pubsub = primary.pubsub().await?;
    tokio::time::timeout(store::TIMEOUT, pubsub.subscribe(super::CHANNEL)).await.map_err(timed_out)??;
    let mut messages = pubsub.on_message();
    // Subscribed first, so a version written from here on is announced to this loop.
    if let Some(document) = seed_and_read(&mut conn, seed, store.keep).await? {
        serve_version(&document, publisher, &store.status, &store.file).await;
    }
    store.status.update(|s| s.connected = true);
    *synced = true;
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.tick().await;
    loop {
        tokio::select! {
            message = messages.next() => {
                if message.is_none() { return Ok(()) }
            }
            _ = poll.tick() => {}
            _ = stop.clone().requested() => return Ok(()),
        }
        if let Some(document) = store::current(&mut conn).await? {
            serve_version(&document, publisher, &store.status, &store.file).await;
        }
    }
}

fn timed_out(_: tokio::time::error::Elapsed) -> StoreError {
    StoreError::Redis(std::io::Error::new(std::io::ErrorKind::TimedOut, "redis did not answer in time").into())
}

/// What a replica starts serving with --redis: Redis's current version (after seeding an
/// empty Redis with the file), so a replica that restarts does not hand its Envoys its
/// file's registry first. Redis unreachable, or its version invalid here: the file, with
/// the reason logged and shown in /status until the follower serves a version from Redis.
pub async fn initial_registry(store: &RegistryStore, file: &std::path::Path) -> anyhow::Result<Registry> {
    let from_redis = async {
        let mut conn = store::connect(&store.url).await?;
        seed_and_read(&mut conn, file, store.keep).await
    };
    let reason = match tokio::time::timeout(store::TIMEOUT * 2, from_redis).await {
        Ok(Ok(Some(document))) => match parse_stored(&document) {
            Ok(registry) => {
                tracing::info!(version = document.version, registry = %registry.version, "registry read from redis");
                mirror(file, &document.yaml);
                store.status.update(|s| {
                    s.served_version = document.version;
                    s.latest_version = document.version;
                });
                return Ok(registry);
            }
            Err(e) => format!("version {}: {e}", document.version),
        },
        Ok(Ok(None)) => String::from("redis holds no registry and the file could not seed it"),
        Ok(Err(e)) => e.to_string(),
        Err(_) => String::from("redis did not answer in time"),
    };
    tracing::warn!(reason = %reason, file = %file.display(), "starting with the registry file until redis serves one");
    store.status.update(|s| s.error = Some(reason));
    Ok(crate::registry::load(file)?)
}
