//! `stagedoor certs`: a development CA and the certificates it signs, written with rcgen.
//! Nothing is overwritten without `force`: a second `certs init` keeps a working setup.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use super::files::{CredentialDir, Pair};
use super::identity::{check_name, node_uri, operator_uri, CONTROL_PLANE_URI};
use super::TlsError;

/// Development certificates last a year (the CA ten), from a day ago: clock skew between
/// containers must not make a fresh certificate "not yet valid".
const LEAF_DAYS: i64 = 365;
const CA_DAYS: i64 = 3650;

/// What happened to each file pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Written(Pair),
    Kept(Pair),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Written(p) => write!(f, "wrote {} and {}", p.cert.display(), p.key.display()),
            Outcome::Kept(p) => write!(f, "kept {} (exists; --force replaces it)", p.cert.display()),
        }
    }
}

pub struct InitRequest<'a> {
    /// Extra server names (DNS names or IPs) for the control plane's and the edge's certificates.
    pub sans: &'a [String],
    pub node_id: &'a str,
    pub operator: &'a str,
    pub force: bool,
}

/// CA, control-plane server certificate, the edge's HTTPS certificate, one Envoy and one
/// operator certificate.
/// A new CA (forced, or none there) replaces every certificate: the old ones would not verify.
pub fn init(dir: &CredentialDir, request: &InitRequest<'_>) -> Result<Vec<Outcome>, TlsError> {
    check_name(request.node_id).map_err(TlsError::BadName)?;
    check_name(request.operator).map_err(TlsError::BadName)?;
    create_dir(dir.path())?;
    let ca_pair = dir.ca();
    let new_ca = request.force || !ca_pair.cert.exists() || !ca_pair.key.exists();
    let mut outcomes = Vec::new();
    let issuer = if new_ca {
        let (params, key) = ca()?;
        let cert = params.self_signed(&key)?;
        write_pair(&ca_pair, &cert.pem(), &key.serialize_pem())?;
        outcomes.push(Outcome::Written(ca_pair));
        Issuer::new(params, key)
    } else {
        outcomes.push(Outcome::Kept(ca_pair.clone()));
        load_issuer(&ca_pair)?
    };
    let force = request.force || new_ca;
    outcomes.push(issue(&dir.control_plane(), force, &issuer, server_params(request.sans)?)?);
    outcomes.push(issue(&dir.edge(), force, &issuer, edge_params(request.sans)?)?);
    outcomes.push(issue(&dir.envoy(request.node_id), force, &issuer, client_params(&format!("envoy {}", request.node_id), &node_uri(request.node_id))?)?);
    outcomes.push(issue(&dir.operator(), force, &issuer, client_params(&format!("operator {}", request.operator), &operator_uri(request.operator))?)?);
    Ok(outcomes)
}

/// One more Envoy client certificate, signed by the directory's CA.
pub fn envoy(dir: &CredentialDir, node_id: &str, force: bool) -> Result<Outcome, TlsError> {
    check_name(node_id).map_err(TlsError::BadName)?;
    let issuer = load_issuer(&dir.ca())?;
    issue(&dir.envoy(node_id), force, &issuer, client_params(&format!("envoy {node_id}"), &node_uri(node_id))?)
}

fn issue(pair: &Pair, force: bool, issuer: &Issuer<'_, KeyPair>, params: CertificateParams) -> Result<Outcome, TlsError> {
    if !force && pair.cert.exists() && pair.key.exists() {
        return Ok(Outcome::Kept(pair.clone()));
    }
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    write_pair(pair, &cert.pem(), &key.serialize_pem())?;
    Ok(Outcome::Written(pair.clone()))
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(days);
}

fn named(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Stagedoor development");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn ca() -> Result<(CertificateParams, KeyPair), TlsError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = named("Stagedoor development CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, CA_DAYS);
    Ok((params, KeyPair::generate()?))
}

fn load_issuer(pair: &Pair) -> Result<Issuer<'static, KeyPair>, TlsError> {
    let cert = read(&pair.cert)?;
    let key = KeyPair::from_pem(&read(&pair.key)?)
        .map_err(|e| TlsError::NotAKey { path: pair.key.display().to_string(), detail: e.to_string() })?;
    Issuer::from_ca_cert_pem(&cert, key)
        .map_err(|e| TlsError::NotACertificate { path: pair.cert.display().to_string(), detail: e.to_string() })
}

fn server_params(extra: &[String]) -> Result<CertificateParams, TlsError> {
    let mut params = loopback_server_params("stagedoor control plane", extra)?;
    params.subject_alt_names.push(SanType::URI(CONTROL_PLANE_URI.try_into()?));
    Ok(params)
}

/// No SPIFFE URI: the edge certificate is only a web server's, never the control plane's.
fn edge_params(extra: &[String]) -> Result<CertificateParams, TlsError> {
    loopback_server_params("stagedoor edge", extra)
}

/// A server certificate for localhost, 127.0.0.1, ::1 and the extra names.
fn loopback_server_params(common_name: &str, extra: &[String]) -> Result<CertificateParams, TlsError> {
    let mut names = vec![String::from("localhost"), String::from("127.0.0.1"), String::from("::1")];
    names.extend(extra.iter().cloned());
    // CertificateParams::new reads an IP-shaped name as an IP SAN and the rest as DNS names.
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name = named(common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut params, LEAF_DAYS);
    Ok(params)
}

fn client_params(common_name: &str, uri: &str) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(uri.try_into()?)];
    params.distinguished_name = named(common_name);
    // Client only: an Envoy's or operator's certificate cannot serve as the control plane.
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut params, LEAF_DAYS);
    Ok(params)
}

fn create_dir(dir: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(|error| TlsError::Write { path: dir.display().to_string(), error })
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|error| TlsError::Read { path: path.display().to_string(), error })
}

fn write_pair(pair: &Pair, cert: &str, key: &str) -> Result<(), TlsError> {
    let write = |path: &Path, text: &str, mode: u32| -> Result<(), TlsError> {
        let error = |error| TlsError::Write { path: path.display().to_string(), error };
        std::fs::write(path, text).map_err(error)?;
        set_mode(path, mode).map_err(error)
    };
    write(&pair.cert, cert, 0o644)?;
    // A private key is for its owner only.
    write(&pair.key, key, 0o600)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> std::io::Result<()> {
    Ok(())
}
