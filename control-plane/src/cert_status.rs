//! Certificate health for /status: the problems the watchers found (which file, what is
//! wrong, since when; the last good certificate keeps serving meanwhile), and the expiry
//! of every certificate served, flagged when it is near.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::Serialize;

/// A certificate expiring within this many days is flagged in /status.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Which watcher found a problem: each keeps at most one, its latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The control plane's own credentials (--tls-dir).
    ControlPlane,
    /// The registry's edge and upstream certificate files.
    Registry,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub source: Source,
    /// None when the problem names no one file.
    pub file: Option<String>,
    pub problem: String,
    /// When this problem was first seen (unix seconds); kept while it persists.
    pub since_unix: i64,
}

#[derive(Debug, Clone, Default)]
pub struct CertificateProblems(Arc<Mutex<BTreeMap<Source, Problem>>>);

impl CertificateProblems {
    /// Records `problem`; the same one again keeps its first `since`.
    pub fn report(&self, source: Source, file: Option<&str>, problem: &str, now: i64) {
        let Ok(mut problems) = self.0.lock() else { return };
        let same = problems.get(&source).is_some_and(|p| p.file.as_deref() == file && p.problem == problem);
        if !same {
            let file = file.map(str::to_owned);
            problems.insert(source, Problem { source, file, problem: problem.to_owned(), since_unix: now });
        }
    }

    pub fn clear(&self, source: Source) {
        if let Ok(mut problems) = self.0.lock() {
            problems.remove(&source);
        }
    }

    pub fn list(&self) -> Vec<Problem> {
        self.0.lock().map(|p| p.values().cloned().collect()).unwrap_or_default()
    }
}

/// One served certificate's validity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expiry {
    /// What serves it: `control plane`, `control plane CA`, `edge_tls localhost`, ...
    pub what: String,
    pub subject: String,
    /// As x509-parser prints it (`Dec  1 14:15:16 2027 +00:00`), and as unix seconds.
    pub not_after: String,
    pub not_after_unix: i64,
    pub days_left: i64,
    /// Fewer than [`EXPIRY_WARNING_DAYS`] days left (or expired).
    pub expiring_soon: bool,
}

/// The leaf (first certificate) of each PEM, in the order given; a PEM that does not parse
/// is skipped (the watchers refuse it before it is served).
pub fn expiries<'a>(served: impl IntoIterator<Item = (String, &'a str)>, now: i64) -> Vec<Expiry> {
    served.into_iter().filter_map(|(what, pem)| expiry(what, pem, now)).collect()
}

fn expiry(what: String, pem: &str, now: i64) -> Option<Expiry> {
    let der = CertificateDer::pem_slice_iter(pem.as_bytes()).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let not_after = cert.validity().not_after;
    let days_left = (not_after.timestamp() - now).div_euclid(86_400);
    Some(Expiry {
        what,
        subject: cert.subject().to_string(),
        not_after: not_after.to_string(),
        not_after_unix: not_after.timestamp(),
        days_left,
        expiring_soon: days_left < EXPIRY_WARNING_DAYS,
    })
}

/// Every certificate the registry serves: edge certificates and client CAs, upstream CAs
/// and client certificates.
pub fn registry_certificates(registry: &crate::registry::Registry) -> Vec<(String, &str)> {
    let mut served = Vec::new();
    for cert in registry.edge_tls.iter().flat_map(|e| &e.certificates) {
        let name = cert.server_names.first().map(String::as_str).unwrap_or_default();
        served.push((format!("edge_tls {name}"), cert.pair.cert_pem.as_str()));
        if let Some(ca) = &cert.client_ca_pem {
            served.push((format!("edge_tls {name} client CA"), ca.as_str()));
        }
    }
    for (service, tls) in &registry.upstream_tls {
        served.push((format!("service {service} upstream CA"), tls.ca_pem.as_str()));
        if let Some(client) = &tls.client {
            served.push((format!("service {service} client certificate"), client.cert_pem.as_str()));
        }
    }
    for source in &registry.jwks {
        if let Some(ca) = &source.ca_pem {
            served.push((format!("jwks {} CA", source.issuer), ca.as_str()));
        }
    }
    served
}

#[cfg(test)]
#[path = "cert_status_tests.rs"]
mod tests;
