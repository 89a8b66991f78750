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

/// Certificates for edge and upstream TLS tests (shared with the end-to-end tests).
pub use stagedoor_test_support::TestCerts;

/// Translation options for unit tests: Envoy listening on 127.0.0.1:`listen_port`, no
/// revocation feed, no TLS to the control plane.
pub fn translate_options(listen_port: u16) -> crate::translate::TranslateOptions {
    crate::translate::TranslateOptions {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], listen_port)),
        wasm_path: "/f.wasm".into(),
        hmac_wasm_path: None,
        control_plane_http: None,
        control_plane_tls: false,
        rate_limit_service: None,
        limits: crate::registry::limits::Limits::default(),
    }
}

/// The shipped registry (registry/tickettoken.yaml), its `.stagedoor/` certificate paths
/// pointed at a fresh `stagedoor certs init` directory: what scripts/run.sh serves.
pub fn shipped_registry(name: &str) -> crate::registry::Registry {
    // One directory per call: tests of one process run in parallel and share its id.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("stagedoor-shipped-{name}-{}-{call}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let request = crate::tls::generate::InitRequest { sans: &[], node_id: "local", operator: "operator", force: false };
    crate::tls::generate::init(&crate::tls::files::CredentialDir::new(&dir), &request).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../registry/tickettoken.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    let yaml = yaml.replace(".stagedoor/", &format!("{}/", dir.display()));
    crate::registry::Registry::parse(&path.display().to_string(), &yaml).unwrap()
}
