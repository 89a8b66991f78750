//! Fixtures for tests only (a dev-dependency): a failure here is a failed test, so it
//! panics with what went wrong instead of returning errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

/// A test CA and the leaves it signs, as PEM files under a fresh temporary directory.
pub struct TestCerts {
    pub dir: PathBuf,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate's path (`<dir>/ca.pem`) and its PEM.
    pub ca_file: String,
    pub ca_pem: String,
}

/// One leaf as written: its certificate and key files, and the certificate's DER (what a
/// TLS client sees as the peer certificate).
pub struct Leaf {
    pub cert_file: String,
    pub key_file: String,
    pub der: Vec<u8>,
}

impl TestCerts {
    /// `name` keeps the directories of tests running at the same time apart.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("stagedoor-certs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the certificates' directory");
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        // Not rcgen's default name, which every leaf would share: BoringSSL would take a
        // leaf named like its issuer for a self-signed certificate.
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, "Stagedoor edge test CA");
        let key = rcgen::KeyPair::generate().expect("CA key");
        let ca_pem = params.self_signed(&key).expect("CA certificate").pem();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &ca_pem).expect("write ca.pem");
        Self { ca_file: ca_file.display().to_string(), dir, ca: rcgen::Issuer::new(params, key), ca_pem }
    }

    /// A leaf for `names`, valid from `from_days` to `to_days` around now; returns the
    /// (cert, key) file paths.
    pub fn leaf(&self, file: &str, names: &[&str], from_days: i64, to_days: i64) -> (String, String) {
        let Leaf { cert_file, key_file, .. } = self.write_leaf(file, names, from_days, to_days);
        (cert_file, key_file)
    }

    /// Writes `<file>.pem` and `<file>-key.pem`, each replaced in one rename (as a
    /// certificate manager does, so a watcher never reads half a file), key first.
    pub fn write_leaf(&self, file: &str, names: &[&str], from_days: i64, to_days: i64) -> Leaf {
        let mut params = rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).expect("names");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from_days);
        params.not_after = now + time::Duration::days(to_days);
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("leaf certificate");
        let (cert_path, key_path) = self.paths(file);
        replace(&key_path, &key.serialize_pem());
        replace(&cert_path, &cert.pem());
        Leaf { cert_file: cert_path.display().to_string(), key_file: key_path.display().to_string(), der: cert.der().to_vec() }
    }

    /// Where `write_leaf(file, ..)` puts the certificate and the key.
    pub fn paths(&self, file: &str) -> (PathBuf, PathBuf) {
        (self.dir.join(format!("{file}.pem")), self.dir.join(format!("{file}-key.pem")))
    }
}

/// Writes `text` to `path` through a temporary file and one rename.
pub fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write a certificate file");
    std::fs::rename(&tmp, path).expect("rename a certificate file into place");
}

/// A leaf for localhost and 127.0.0.1 with the URI SAN `uri` (a Stagedoor identity such as
/// spiffe://stagedoor/node/<id>), signed by the CA in `ca_cert_pem`/`ca_key_pem` (a stack's
/// `certs init` CA), valid from `from_days` to `to_days` around now: (cert PEM, key PEM).
pub fn identity_leaf_signed_by(ca_cert_pem: &str, ca_key_pem: &str, name: &str, uri: &str, from_days: i64, to_days: i64) -> (String, String) {
    let ca_key = rcgen::KeyPair::from_pem(ca_key_pem).expect("CA key PEM");
    let issuer = rcgen::Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).expect("CA certificate PEM");
    identity_leaf(&issuer, name, uri, from_days, to_days)
}

/// The same leaf signed by a CA made for the occasion, which nothing trusts.
pub fn identity_leaf_from_a_stranger_ca(name: &str, uri: &str, from_days: i64, to_days: i64) -> (String, String) {
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, "Not the Stagedoor CA");
    let key = rcgen::KeyPair::generate().expect("stranger CA key");
    params.self_signed(&key).expect("stranger CA certificate");
    identity_leaf(&rcgen::Issuer::new(params, key), name, uri, from_days, to_days)
}

fn identity_leaf(issuer: &rcgen::Issuer<'_, rcgen::KeyPair>, name: &str, uri: &str, from_days: i64, to_days: i64) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(vec![String::from("localhost"), String::from("127.0.0.1")]).expect("names");
    params.subject_alt_names.push(rcgen::SanType::URI(uri.try_into().expect("a URI SAN")));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::days(from_days);
    params.not_after = now + time::Duration::days(to_days);
    let key = rcgen::KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("leaf certificate");
    (cert.pem(), key.serialize_pem())
}

/// An EC P-256 signing key as an identity provider holds it, under `kid`: the PKCS#8 PEM a
/// test signs ES256 tokens with, and the public JWK (JSON text) its JWKS publishes.
pub fn ec_signing_key(kid: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("EC P-256 key");
    // The uncompressed point: 0x04, then x and y, 32 bytes each.
    let point = key.public_key_raw();
    assert_eq!((point.len(), point[0]), (65, 4), "an uncompressed P-256 point");
    let jwk = format!(
        r#"{{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","kid":"{kid}","x":"{}","y":"{}"}}"#,
        base64url(&point[1..33]),
        base64url(&point[33..65])
    );
    (key.serialize_pem(), jwk)
}

/// Unpadded base64url (RFC 4648 5), as JWKs write their numbers.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64url_matches_rfc_4648_vectors() {
        let cases = [("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"), ("fooba", "Zm9vYmE"), ("foobar", "Zm9vYmFy")];
        for (plain, encoded) in cases {
            assert_eq!(super::base64url(plain.as_bytes()), encoded);
        }
        assert_eq!(super::base64url(&[0xfb, 0xff]), "-_8");
    }
}
