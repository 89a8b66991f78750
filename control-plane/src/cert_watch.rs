//! Follows the certificate, key and CA files the served registry names: when one changes,
//! the served registry is validated again (which reads and checks them) and published, so
//! a rotated certificate reaches Envoy as a new SDS secret without a restart. A bad file
//! (does not parse, key not the certificate's, expired) is logged, shown in /status (the
//! file, the problem, since when) and the last good certificates keep serving.
//!
//! Polling, as the registry watcher does and for its reasons (editors that replace files,
//! ConfigMaps that swap symlinks). The served registry is re-validated rather than the file
//! re-read, so a registry applied over the API is kept.

use crate::cert_status::{CertificateProblems, Source};
use crate::registry::Registry;
use crate::shared_publisher::SharedPublisher;
use crate::watch::POLL_INTERVAL;

/// Runs until the process stops.
pub async fn follow_certificate_files(publisher: SharedPublisher, problems: CertificateProblems) {
    let mut last: Option<(Vec<String>, Vec<Option<String>>)> = None;
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    loop {
        ticker.tick().await;
        let files = publisher.view().registry.certificate_files();
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
        revalidate(&publisher, &problems).await;
    }
}

async fn revalidate(publisher: &SharedPublisher, problems: &CertificateProblems) {
    // Read from the published view and checked off the async workers (validation reads the
    // certificate files); only the apply, which translates and compiles, is a write.
    let view = publisher.view();
    let (served, served_version) = (view.registry.to_file(false), view.registry.version.clone());
    let validated = crate::shared_publisher::off_the_workers(|| Registry::validate("certificates", served, &|name| std::env::var(name).ok()));
    let registry = match validated {
        Ok(registry) => registry,
        Err(e) => {
            crate::metrics::bump(&crate::metrics::REGISTRY_EDITS_REJECTED);
            let message = e.to_string();
            // The error names the file at fault first ("<field>: <file>: <reason>"), perhaps
            // its pair after.
            let files = view.registry.certificate_files();
            let file = files.iter().filter_map(|f| message.find(f.as_str()).map(|at| (at, f))).min().map(|(_, f)| f.clone());
            problems.report(Source::Registry, file.as_deref(), &message, crate::tls::load::unix_now());
            tracing::error!(error = %e, "certificate change rejected; keeping last good certificates");
            return;
        }
    };
    problems.clear(Source::Registry);
    if registry.version == served_version {
        return;
    }
    let version = registry.version.clone();
    // A registry applied meanwhile (file or API) was validated with the files as they are
    // now: it wins, and this one, made from the registry before it, is dropped.
    let applied = publisher.update(|p| if p.registry().version == served_version { p.apply(registry) } else { Ok(false) }).await;
    match applied {
        Ok(_) => tracing::info!(registry = %version, "certificate change applied"),
        Err(e) => tracing::error!(error = %e, "certificate change rejected; keeping last good certificates"),
    }
}
