//! HTTPS at the edge and TLS to upstreams: the registry's `edge_tls` and per-service `tls`
//! sections, and their resolution into checked PEM material.
//!
//! Certificates are read (from files, or from the control plane's environment) when the
//! registry is validated, and checked there: a certificate that does not parse, a key that is
//! not the certificate's, or an expired certificate refuses the whole registry, so the last
//! good config keeps serving. The PEM text is part of the registry's version, so a rotated
//! certificate file is a new version (see `watch::follow_certificate_files`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::tls::load::{check_pem_bundle, check_pem_pair};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeTlsSpec {
    /// The HTTPS port, on the listen address of the HTTP listener.
    pub port: u16,
    /// What the plain HTTP port does: `redirect` to HTTPS (the default) or `off`.
    #[serde(default)]
    pub http: PlainHttp,
    /// `Strict-Transport-Security` on every HTTPS response; absent: not sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<HstsSpec>,
    /// One entry per certificate, chosen by SNI. The first also serves clients that send no
    /// SNI (or one no entry names).
    pub certificates: Vec<EdgeCertificateSpec>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlainHttp {
    #[default]
    Redirect,
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HstsSpec {
    pub max_age_secs: u64,
    #[serde(default)]
    pub include_subdomains: bool,
    #[serde(default)]
    pub preload: bool,
}

impl HstsSpec {
    pub fn header_value(&self) -> String {
        let mut value = format!("max-age={}", self.max_age_secs);
        if self.include_subdomains {
            value.push_str("; includeSubDomains");
        }
        if self.preload {
            value.push_str("; preload");
        }
        value
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeCertificateSpec {
    /// SNI names this certificate answers (`api.example.com`, `*.example.com`).
    pub server_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// The control plane's environment variable holding the PEM chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_env: Option<String>,
    /// Partner routes: clients on these names must show a certificate signed by
    /// `client_ca_file`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_client_certificate: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<String>,
}

/// A service's upstream TLS: the gateway connects to its instances over TLS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSpec {
    /// The CA bundle that signs the instances' certificates.
    pub ca_file: String,
    /// The name sent as SNI and required in the instance's certificate; absent: no SNI and
    /// any name the CA signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// A client certificate for upstreams that require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<String>,
}

/// A certificate and key, checked. The key is never printed.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct PemPair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for PemPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PemPair").field("cert_pem", &self.cert_pem.len()).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EdgeCertificate {
    pub server_names: Vec<String>,
    pub pair: PemPair,
    pub client_ca_pem: Option<String>,
    pub require_client_certificate: bool,
}

/// `edge_tls` with its certificates read and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EdgeTls {
    pub port: u16,
    pub http: PlainHttp,
    pub hsts: Option<HstsSpec>,
    pub certificates: Vec<EdgeCertificate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamTls {
    pub ca_pem: String,
    pub sni: Option<String>,
    pub client: Option<PemPair>,
}

/// (field, reason): the caller adds the item (`edge_tls.certificates[0]`, a service).
pub type FieldError = (String, String);

/// The files every resolved certificate came from: what the certificate watcher follows.
pub fn files_of(edge: Option<&EdgeTlsSpec>, upstream: &[&UpstreamTlsSpec]) -> Vec<String> {
    let mut files = Vec::new();
    for cert in edge.map(|e| e.certificates.as_slice()).unwrap_or_default() {
        files.extend([&cert.cert_file, &cert.key_file, &cert.client_ca_file].into_iter().flatten().cloned());
    }
    for tls in upstream {
        files.push(tls.ca_file.clone());
        files.extend([&tls.client_cert_file, &tls.client_key_file].into_iter().flatten().cloned());
    }
    files
}

pub fn resolve_edge(spec: &EdgeTlsSpec, env: &dyn Fn(&str) -> Option<String>, now: i64) -> Result<EdgeTls, (String, FieldError)> {
    let top = |field: &str, reason: String| (String::from("edge_tls"), (field.to_owned(), reason));
    if spec.port == 0 {
        return Err(top("port", String::from("must be 1-65535")));
    }
    if spec.certificates.is_empty() {
        return Err(top("certificates", String::from("list at least one certificate")));
    }
    if let Some(hsts) = &spec.hsts {
        if hsts.preload && (hsts.max_age_secs < 31_536_000 || !hsts.include_subdomains) {
            return Err(top("hsts.preload", String::from("preload needs max_age_secs >= 31536000 and include_subdomains")));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut certificates = Vec::with_capacity(spec.certificates.len());
    for (i, cert) in spec.certificates.iter().enumerate() {
        let item = format!("edge_tls.certificates[{i}]");
        certificates.push(resolve_certificate(cert, env, now, &mut seen).map_err(|e| (item, e))?);
    }
    Ok(EdgeTls { port: spec.port, http: spec.http, hsts: spec.hsts.clone(), certificates })
}

fn resolve_certificate(
    spec: &EdgeCertificateSpec,
    env: &dyn Fn(&str) -> Option<String>,
    now: i64,
    seen: &mut std::collections::BTreeSet<String>,
) -> Result<EdgeCertificate, FieldError> {
    if spec.server_names.is_empty() {
        return Err((String::from("server_names"), String::from("list at least one name")));
    }
    for name in &spec.server_names {
        if !is_server_name(name) {
            return Err((String::from("server_names"), format!("{name:?} is not a DNS name or a *.wildcard")));
        }
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err((String::from("server_names"), format!("{name} is named by two certificates")));
        }
    }
    let (cert_field, cert_name, cert_pem) = pem_source("cert", &spec.cert_file, &spec.cert_env, env)?;
    let (key_field, key_name, key_pem) = pem_source("key", &spec.key_file, &spec.key_env, env)?;
    check_pem_pair(Path::new(&cert_name), &cert_pem, Path::new(&key_name), &key_pem, now).map_err(|e| {
        let field = if matches!(e, crate::tls::TlsError::NotAKey { .. } | crate::tls::TlsError::KeyMismatch { .. }) { key_field } else { cert_field };
        (field, e.to_string())
    })?;
    let client_ca_pem = match (&spec.client_ca_file, spec.require_client_certificate) {
        (None, true) => return Err((String::from("client_ca_file"), String::from("require_client_certificate needs the CA that signs partner certificates"))),
        (None, false) => None,
        (Some(path), _) => Some(read_bundle("client_ca_file", path, now)?),
    };
    Ok(EdgeCertificate {
        server_names: spec.server_names.clone(),
        pair: PemPair { cert_pem, key_pem },
        client_ca_pem,
        require_client_certificate: spec.require_client_certificate,
    })
}

pub fn resolve_upstream(spec: &UpstreamTlsSpec, now: i64) -> Result<UpstreamTls, FieldError> {
    let ca_pem = read_bundle("tls.ca_file", &spec.ca_file, now)?;
    if let Some(sni) = &spec.sni {
        if !is_server_name(sni) || sni.starts_with('*') {
            return Err((String::from("tls.sni"), format!("{sni:?} is not a DNS name")));
        }
    }
    let client = match (&spec.client_cert_file, &spec.client_key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let cert_pem = read("tls.client_cert_file", cert)?;
            let key_pem = read("tls.client_key_file", key)?;
            check_pem_pair(Path::new(cert), &cert_pem, Path::new(key), &key_pem, now).map_err(|e| {
                let field = if matches!(e, crate::tls::TlsError::NotAKey { .. } | crate::tls::TlsError::KeyMismatch { .. }) { "tls.client_key_file" } else { "tls.client_cert_file" };
                (field.to_owned(), e.to_string())
            })?;
            Some(PemPair { cert_pem, key_pem })
        }
        _ => return Err((String::from("tls.client_cert_file"), String::from("give both client_cert_file and client_key_file, or neither"))),
    };
    Ok(UpstreamTls { ca_pem, sni: spec.sni.clone(), client })
}

/// Exactly one of `<what>_file` and `<what>_env`: (the field used, where it came from, PEM).
fn pem_source(
    what: &str,
    file: &Option<String>,
    var: &Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, String, String), FieldError> {
    match (file, var) {
        (Some(path), None) => Ok((format!("{what}_file"), path.clone(), read(&format!("{what}_file"), path)?)),
        (None, Some(var)) => {
            let field = format!("{what}_env");
            let pem = env(var).ok_or_else(|| (field.clone(), format!("{var} is not set in the control plane's environment")))?;
            Ok((field, format!("${var}"), pem))
        }
        _ => Err((format!("{what}_file"), format!("give exactly one of `{what}_file` or `{what}_env`"))),
    }
}

fn read(field: &str, path: &str) -> Result<String, FieldError> {
    std::fs::read_to_string(path).map_err(|e| (field.to_owned(), format!("{path}: {e}")))
}

pub(super) fn read_bundle(field: &str, path: &str, now: i64) -> Result<String, FieldError> {
    let pem = read(field, path)?;
    check_pem_bundle(Path::new(path), &pem, now).map_err(|e| (field.to_owned(), e.to_string()))?;
    Ok(pem)
}

/// A DNS name, or one whose first label is `*`.
fn is_server_name(name: &str) -> bool {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    !rest.is_empty()
        && rest.len() <= 253
        && rest.split('.').all(|label| {
            !label.is_empty() && label.len() <= 63 && !label.starts_with('-') && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
#[path = "edge_tests.rs"]
mod tests;
