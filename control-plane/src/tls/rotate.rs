//! Follows the control plane's own credentials (CA, certificate and key in --tls-dir): when
//! a file changes they are read and checked again (parse, the key is the certificate's,
//! within validity, signed by the CA) and, if good, served from the next handshake on the
//! gRPC and HTTP ports; open connections and ADS streams keep theirs. A bad set is logged
//! naming the file, shown in /status, and the last good credentials keep serving.
//!
//! Polling, as the registry and certificate watchers do (files replaced by rename,
//! ConfigMaps swapping symlinks). A rotation written file by file is refused while half
//! written (a new key beside the old certificate) and taken once the set matches.

use crate::cert_status::{CertificateProblems, Source};
use crate::tls::files::CredentialDir;
use crate::tls::load::Credentials;
use crate::tls::served::ServedTls;
use crate::tls::TlsError;
use crate::watch::POLL_INTERVAL;

/// Runs until the process stops.
pub async fn follow_server_credentials(dir: CredentialDir, served: ServedTls, problems: CertificateProblems) {
    let mut last = contents(&dir).await;
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    loop {
        ticker.tick().await;
        let current = contents(&dir).await;
        if current == last {
            continue;
        }
        last = current;
        let loaded = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || crate::tls::load::server(&dir)).await
        };
        match loaded {
            Ok(loaded) => apply(loaded, &served, &problems),
            Err(e) => tracing::error!(error = %e, "control-plane credential check did not finish"),
        }
    }
}

/// Serves `loaded` when it is good; otherwise records why and keeps what is served.
fn apply(loaded: Result<Credentials, TlsError>, served: &ServedTls, problems: &CertificateProblems) {
    let now = crate::tls::load::unix_now();
    match loaded.and_then(|credentials| served.replace(&credentials)) {
        Ok(()) => {
            problems.clear(Source::ControlPlane);
            tracing::info!("control-plane certificate reloaded; new handshakes use it");
        }
        Err(e) => {
            problems.report(Source::ControlPlane, e.file(), &e.to_string(), now);
            tracing::error!(file = e.file().unwrap_or("-"), error = %e, "control-plane certificate change refused; the last good one keeps serving");
        }
    }
}

/// The three files' bytes (None: unreadable), compared between polls.
async fn contents(dir: &CredentialDir) -> [Option<Vec<u8>>; 3] {
    let (ca, server) = (dir.ca(), dir.control_plane());
    [tokio::fs::read(&ca.cert).await.ok(), tokio::fs::read(&server.cert).await.ok(), tokio::fs::read(&server.key).await.ok()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::generate::{init, InitRequest};

    fn credentials(name: &str) -> (CredentialDir, Credentials) {
        let dir = CredentialDir::new(std::env::temp_dir().join(format!("stagedoor-rotate-{name}-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(dir.path());
        init(&dir, &InitRequest { sans: &[], node_id: "n", operator: "o", force: false }).unwrap();
        let loaded = crate::tls::load::server(&dir).unwrap();
        (dir, loaded)
    }

    #[test]
    fn a_refused_set_keeps_the_served_one_and_is_recorded_until_a_good_one_replaces_it() {
        let (dir, first) = credentials("first");
        let served = ServedTls::new(&first).unwrap();
        let problems = CertificateProblems::default();
        std::fs::write(dir.control_plane().cert, "garbage").unwrap();
        apply(crate::tls::load::server(&dir), &served, &problems);
        assert_eq!(served.current().cert_pem, first.cert_pem, "the last good certificate keeps serving");
        let listed = problems.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].file.as_deref(), Some(dir.control_plane().cert.display().to_string().as_str()));
        assert!(listed[0].problem.contains("not a PEM certificate"), "{listed:?}");

        let (_, second) = credentials("second");
        apply(Ok(second), &served, &problems);
        assert_ne!(served.current().cert_pem, first.cert_pem);
        assert_eq!(problems.list(), []);
    }
}
