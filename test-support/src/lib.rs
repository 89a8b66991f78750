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
