//! Shared fixtures for unit tests.

/// A minimal `auth` section; registries in tests start with it.
pub const AUTH: &str = "auth:
  issuer: tickettoken
  audience: tickettoken-platform
  keys:
    - algorithms: [HS256]
      secret: unit-test-secret-unit-test-secret-0123
      dev: true
";

/// `AUTH` followed by the given `services:` section.
pub fn registry_yaml(services: &str) -> String {
    format!("{AUTH}{services}")
}

/// Certificates for edge TLS tests, written under a fresh temporary directory.
pub struct TestCerts {
    pub dir: std::path::PathBuf,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub ca_file: String,
}

impl TestCerts {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("stagedoor-edge-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        // Not rcgen's default name, which every leaf would share: BoringSSL would take a
        // leaf named like its issuer for a self-signed certificate.
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, "Stagedoor edge test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ca_file = dir.join("ca.pem").display().to_string();
        std::fs::write(&ca_file, cert.pem()).unwrap();
        Self { dir, ca: rcgen::Issuer::new(params, key), ca_file }
    }

    /// A leaf for `names`, valid from `from_days` to `to_days` around now; returns the
    /// (cert, key) file paths.
    pub fn leaf(&self, file: &str, names: &[&str], from_days: i64, to_days: i64) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from_days);
        params.not_after = now + time::Duration::days(to_days);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (cert_file, key_file) = (self.dir.join(format!("{file}.pem")), self.dir.join(format!("{file}-key.pem")));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file.display().to_string(), key_file.display().to_string())
    }
}

/// Translation options for unit tests: Envoy listening on 127.0.0.1:`listen_port`, no
/// revocation feed, no TLS to the control plane.
pub fn translate_options(listen_port: u16) -> crate::translate::TranslateOptions {
    crate::translate::TranslateOptions {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], listen_port)),
        wasm_path: "/f.wasm".into(),
        control_plane_http: None,
        control_plane_tls: false,
        rate_limit_service: None,
    }
}

/// The shipped registry (registry/tickettoken.yaml), its `.stagedoor/` certificate paths
/// pointed at a fresh `stagedoor certs init` directory: what scripts/run.sh serves.
pub fn shipped_registry(name: &str) -> crate::registry::Registry {
    let dir = std::env::temp_dir().join(format!("stagedoor-shipped-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let request = crate::tls::generate::InitRequest { sans: &[], node_id: "local", operator: "operator", force: false };
    crate::tls::generate::init(&crate::tls::files::CredentialDir::new(&dir), &request).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../registry/tickettoken.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    let yaml = yaml.replace(".stagedoor/", &format!("{}/", dir.display()));
    crate::registry::Registry::parse(&path.display().to_string(), &yaml).unwrap()
}
