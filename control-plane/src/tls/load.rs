//! Reading credentials and checking them before anything serves or connects with them: a
//! file that does not parse, a key that is not the certificate's, an expired certificate or
//! one our CA did not sign is an error naming the file, at startup.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::files::{CredentialDir, Pair};
use super::TlsError;

/// A CA and a certificate/key pair it signed, checked.
pub struct Credentials {
    pub ca_pem: String,
    pub ca: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("chain", &self.chain.len()).finish_non_exhaustive()
    }
}

/// The control plane's server credentials in `dir`.
pub fn server(dir: &CredentialDir) -> Result<Credentials, TlsError> {
    load(&dir.ca().cert, &dir.control_plane(), unix_now())
}

/// The operator's client credentials in `dir`.
pub fn operator(dir: &CredentialDir) -> Result<Credentials, TlsError> {
    load(&dir.ca().cert, &dir.operator(), unix_now())
}

pub fn load(ca_path: &Path, pair: &Pair, now: i64) -> Result<Credentials, TlsError> {
    let ca_pem = read(ca_path)?;
    let ca = certificates(ca_path, &ca_pem)?.into_iter().next().ok_or_else(|| no_certificate(ca_path))?;
    check_certificate(ca_path, &ca, None, now)?;
    let cert_pem = read(&pair.cert)?;
    let chain = certificates(&pair.cert, &cert_pem)?;
    let leaf = chain.first().ok_or_else(|| no_certificate(&pair.cert))?;
    check_certificate(&pair.cert, leaf, Some((ca_path, &ca)), now)?;
    let key_pem = read(&pair.key)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsError::NotAKey { path: pair.key.display().to_string(), detail: e.to_string() })?;
    check_key_matches(pair, leaf, &key)?;
    Ok(Credentials { ca_pem, ca, cert_pem, key_pem, chain, key })
}

/// A certificate chain and key given as PEM text (read from files or the environment):
/// parses, is within its validity period at `now`, and the key is the leaf's. `cert_name`
/// and `key_name` say where each came from in errors.
pub fn check_pem_pair(cert_name: &Path, cert_pem: &str, key_name: &Path, key_pem: &str, now: i64) -> Result<(), TlsError> {
    let chain = certificates(cert_name, cert_pem)?;
    let leaf = chain.first().ok_or_else(|| no_certificate(cert_name))?;
    check_certificate(cert_name, leaf, None, now)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsError::NotAKey { path: key_name.display().to_string(), detail: e.to_string() })?;
    check_key_matches(&Pair { cert: cert_name.to_path_buf(), key: key_name.to_path_buf() }, leaf, &key)
}

/// A CA bundle as PEM text: at least one certificate, each parsing and within its validity.
pub fn check_pem_bundle(name: &Path, pem: &str, now: i64) -> Result<(), TlsError> {
    let bundle = certificates(name, pem)?;
    if bundle.is_empty() {
        return Err(no_certificate(name));
    }
    bundle.iter().try_for_each(|der| check_certificate(name, der, None, now))
}

fn no_certificate(path: &Path) -> TlsError {
    TlsError::NotACertificate { path: path.display().to_string(), detail: String::from("no CERTIFICATE block") }
}

fn certificates(path: &Path, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NotACertificate { path: path.display().to_string(), detail: e.to_string() })
}

/// Parses, is within its validity period at `now`, and (given a CA) carries the CA's signature.
pub fn check_certificate(
    path: &Path,
    der: &CertificateDer<'_>,
    ca: Option<(&Path, &CertificateDer<'_>)>,
    now: i64,
) -> Result<(), TlsError> {
    let name = path.display().to_string();
    let cert = parse(path, der)?;
    let validity = cert.validity();
    if now > validity.not_after.timestamp() {
        return Err(TlsError::Expired { path: name, not_after: validity.not_after.to_string() });
    }
    if now < validity.not_before.timestamp() {
        return Err(TlsError::NotYetValid { path: name, not_before: validity.not_before.to_string() });
    }
    if let Some((ca_path, ca_der)) = ca {
        let ca_cert = parse(ca_path, ca_der)?;
        let signed = cert.issuer() == ca_cert.subject() && cert.verify_signature(Some(ca_cert.public_key())).is_ok();
        if !signed {
            return Err(TlsError::NotSignedByCa { path: name, ca: ca_path.display().to_string() });
        }
    }
    Ok(())
}

fn parse<'a>(path: &Path, der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, TlsError> {
    X509Certificate::from_der(der.as_ref())
        .map(|(_, cert)| cert)
        .map_err(|e| TlsError::NotACertificate { path: path.display().to_string(), detail: e.to_string() })
}

/// The key's public half is the one in the certificate.
fn check_key_matches(pair: &Pair, leaf: &CertificateDer<'_>, key: &PrivateKeyDer<'_>) -> Result<(), TlsError> {
    let not_a_key = |detail: String| TlsError::NotAKey { path: pair.key.display().to_string(), detail };
    let signing = rustls::crypto::ring::sign::any_supported_type(key).map_err(|e| not_a_key(e.to_string()))?;
    let public = signing.public_key().ok_or_else(|| not_a_key(String::from("no public key")))?;
    let cert = parse(&pair.cert, leaf)?;
    if public.as_ref() != cert.public_key().raw {
        return Err(TlsError::KeyMismatch { cert: pair.cert.display().to_string(), key: pair.key.display().to_string() });
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|error| TlsError::Read { path: path.display().to_string(), error })
}

pub fn unix_now() -> i64 {
    (crate::clock::unix_ms() / 1000) as i64
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server config with our certificate, client certificates verified against the CA when
/// offered, and the given ALPN protocols. Optional at the TLS layer because API scripts may
/// use a bearer token instead; the ADS service refuses a stream without one, the API a
/// caller without either.
pub fn server_config(credentials: &Credentials, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(credentials.ca.clone())?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(credentials.chain.clone(), credentials.key.clone_key())?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client's TLS for the gRPC API: the CA to verify the server, our certificate to show.
pub fn grpc_client(credentials: &Credentials) -> tonic::transport::ClientTlsConfig {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&credentials.ca_pem))
        .identity(Identity::from_pem(&credentials.cert_pem, &credentials.key_pem))
}
