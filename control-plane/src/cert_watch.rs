//! Follows the certificate, key and CA files the served registry names: when one changes,
//! the served registry is validated again (which reads and checks them) and published, so
//! a rotated certificate reaches Envoy as a new SDS secret without a restart. A bad file
//! (does not parse, key not the certificate's, expired) is logged and the last good
//! certificates keep serving.
//!
//! Polling, as the registry watcher does and for its reasons (editors that replace files,
//! ConfigMaps that swap symlinks). The served registry is re-validated rather than the file
//! re-read, so a registry applied over the API is kept.

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::publish::Publisher;
use crate::registry::Registry;
use crate::watch::POLL_INTERVAL;

/// Runs until the process stops.
pub async fn follow_certificate_files(publisher: Arc<Mutex<Publisher>>) {
    let mut last: Option<(Vec<String>, Vec<Option<String>>)> = None;
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    loop {
        ticker.tick().await;
        let files = publisher.lock().await.registry().certificate_files();
        if files.is_empty() {
            last = None;
            continue;
        }
        let mut contents = Vec::with_capacity(files.len());
        for file in &files {
            contents.push(tokio::fs::read_to_string(file).await.ok());
        }
        let current = (files, contents);
        let changed = last.as_ref().is_some_and(|seen| seen != &current);
        let first = last.is_none();
        last = Some(current);
        if !(changed || first) {
            continue;
        }
        revalidate(&publisher).await;
    }
}

async fn revalidate(publisher: &Mutex<Publisher>) {
    // Files are read and checked without the lock; only the apply takes it.
    let served = publisher.lock().await.registry().to_file(false);
    let registry = match Registry::validate("certificates", served, &|name| std::env::var(name).ok()) {
        Ok(registry) => registry,
        Err(e) => {
            crate::metrics::bump(&crate::metrics::REGISTRY_EDITS_REJECTED);
            tracing::error!(error = %e, "certificate change rejected; keeping last good certificates");
            return;
        }
    };
    let mut publisher = publisher.lock().await;
    if registry.version == publisher.registry().version {
        return;
    }
    let version = registry.version.clone();
    match publisher.apply(registry) {
        Ok(_) => tracing::info!(registry = %version, "certificate change applied"),
        Err(e) => tracing::error!(error = %e, "certificate change rejected; keeping last good certificates"),
    }
}
