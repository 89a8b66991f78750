//! Follows the registry file: a valid edit is published, an invalid one is logged and the
//! last good config keeps serving.
//!
//! Polling the content every 200 ms rather than relying on inotify: it survives editors
//! that replace the file, mounted ConfigMaps that swap symlinks, and files on any
//! filesystem, and it costs one small read.

use std::path::PathBuf;
use std::time::Duration;

use crate::shared_publisher::SharedPublisher;
use crate::registry::Registry;

pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Runs until the process stops. Starts with no baseline: the first read is compared with
/// what is served, so an edit made before this task started (or while a dead one waited to
/// be started again) is not mistaken for one already applied.
pub async fn follow_registry_file(path: PathBuf, publisher: SharedPublisher) {
    let mut last_text: Option<String> = None;
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
