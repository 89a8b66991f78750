//! Follows the registry file: a valid edit is published, an invalid one is logged and the
//! last good config keeps serving.
//!
//! Polling the content every 200 ms rather than relying on inotify: it survives editors
//! that replace the file, mounted ConfigMaps that swap symlinks, and files on any
//! filesystem, and it costs one small read.

use std::path::PathBuf;
use std::time::Duration;

use crate::registry::Registry;
use crate::registry_store::follow::RegistryStore;
use crate::shared_publisher::SharedPublisher;

pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Runs until the process stops. Starts with no baseline: the first read is compared with
/// what is served, so an edit made before this task started (or while a dead one waited to
/// be started again) is not mistaken for one already applied.
///
/// With `redis` (serve --redis) the file mirrors the version served here (the follower and
/// ApplyRegistry write it) and an edit to it is written to Redis instead (registry_store::
/// file_edits), based on the version the file last held: an edit of an older copy is
/// refused as stale, never a lost update. The first read is only the baseline: at start the
/// file is the seed, which may be older than what Redis holds.
pub async fn follow_registry_file(path: PathBuf, publisher: SharedPublisher, redis: Option<RegistryStore>) {
    let mut last_text: Option<String> = match &redis {
        Some(_) => tokio::fs::read_to_string(&path).await.ok(),
        None => None,
    };
    // The store version the file's content was last known to be (redis mode only).
    let mut file_base: Option<u64> = None;
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    // The size of an oversize file already reported, so it is logged once, not every poll.
    let mut reported_oversize: Option<u64> = None;
    loop {
        ticker.tick().await;
        // An oversize file is refused without reading it, so it is never held in memory.
        let limit = crate::registry::input::MAX_REGISTRY_BYTES;
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.len() > limit as u64 => {
                if reported_oversize != Some(meta.len()) {
                    reported_oversize = Some(meta.len());
                    crate::metrics::bump(&crate::metrics::REGISTRY_EDITS_REJECTED);
                    let bytes = usize::try_from(meta.len()).unwrap_or(usize::MAX);
                    let e = crate::registry::RegistryError::TooLarge { file: path.display().to_string(), bytes, limit };
                    tracing::error!(error = %e, "registry edit rejected; keeping last good config");
                }
                continue;
            }
            _ => reported_oversize = None,
        }
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(text) => text,
            Err(e) => {
                if last_text.is_some() {
                    tracing::error!(file = %path.display(), error = %e, "registry file unreadable; keeping last good config");
                    last_text = None;
                }
                continue;
            }
        };
        if last_text.as_deref() == Some(text.as_str()) {
            continue;
        }
        last_text = Some(text.clone());
        // Validation reads certificate files and hashes the registry: kept off the async workers.
        let registry = match crate::shared_publisher::off_the_workers(|| Registry::parse(&path.display().to_string(), &text)) {
            Ok(registry) => registry,
            Err(e) => {
                crate::metrics::bump(&crate::metrics::REGISTRY_EDITS_REJECTED);
                tracing::error!(error = %e, "registry edit rejected; keeping last good config");
                continue;
            }
        };
        let version = registry.version.clone();
        if let Some(store) = &redis {
            if publisher.view().registry.version == version {
                // The mirror of what is served (or a layout-only edit of it).
                file_base = Some(store.status.get().served_version);
                continue;
            }
            let file = path.display().to_string();
            let base = file_base.unwrap_or(store.status.get().served_version);
            match crate::registry_store::file_edits::apply_file_edit(store, &publisher, registry, &text, &file, base).await {
                Ok(written) => {
                    file_base = Some(store.status.get().served_version);
                    crate::metrics::bump(&crate::metrics::REGISTRY_EDITS_APPLIED);
                    tracing::info!(%file, registry = %version, ?written, "registry edit written to redis");
                }
                Err(e) => {
                    crate::metrics::bump(&crate::metrics::REGISTRY_EDITS_REJECTED);
                    tracing::error!(%file, error = %e, "registry edit rejected; keeping last good config");
                }
            }
            continue;
        }
        if publisher.view().registry.version == version {
            // Already served: the first read, or an edit to comments or layout only.
            tracing::debug!(file = %path.display(), registry = %version, "registry file read; already served");
            continue;
        }
        match publisher.update(|p| p.apply(registry)).await {
            Ok(true) => {
                crate::metrics::bump(&crate::metrics::REGISTRY_EDITS_APPLIED);
                tracing::info!(file = %path.display(), registry = %version, "registry edit applied");
            }
            Ok(false) => tracing::info!(file = %path.display(), "registry edit changes nothing Envoy sees"),
            Err(e) => {
                crate::metrics::bump(&crate::metrics::REGISTRY_EDITS_REJECTED);
                tracing::error!(error = %e, "registry edit rejected; keeping last good config");
            }
        }
    }
}
