use super::files::CredentialDir;
use super::generate::{envoy, init, InitRequest, Outcome};
use super::identity::{identity_from_uri, identity_of, PeerIdentity};
use super::load::{load, operator, server, unix_now};
use super::TlsError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

fn scratch(name: &str) -> CredentialDir {
    let dir = std::env::temp_dir().join(format!("stagedoor-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    CredentialDir::new(dir)
}

fn request(force: bool) -> InitRequest<'static> {
    InitRequest { sans: &[], node_id: "node-a", operator: "ops", force }
}

fn der(path: &std::path::Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

#[test]
fn init_writes_a_ca_and_three_certificates_that_load_and_name_their_holders() {
    let dir = scratch("init");
    let outcomes = init(&dir, &request(false)).unwrap();
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Written(_))), "{outcomes:?}");
    server(&dir).unwrap();
    operator(&dir).unwrap();
    load(&dir.ca().cert, &dir.envoy("node-a"), unix_now()).unwrap();
    assert_eq!(identity_of(&der(&dir.envoy("node-a").cert)), PeerIdentity::Envoy { node_id: "node-a".into() });
    assert_eq!(identity_of(&der(&dir.operator().cert)), PeerIdentity::Operator { name: "ops".into() });
    // The server certificate is nobody's client identity.
    assert!(matches!(identity_of(&der(&dir.control_plane().cert)), PeerIdentity::Unrecognised { .. }));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.ca().key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[test]
fn init_keeps_what_exists_unless_forced() {
    let dir = scratch("idempotent");
    init(&dir, &request(false)).unwrap();
    let ca_before = std::fs::read(dir.ca().cert).unwrap();
    let again = init(&dir, &request(false)).unwrap();
    assert!(again.iter().all(|o| matches!(o, Outcome::Kept(_))), "{again:?}");
    assert_eq!(std::fs::read(dir.ca().cert).unwrap(), ca_before);
    let forced = init(&dir, &request(true)).unwrap();
    assert!(forced.iter().all(|o| matches!(o, Outcome::Written(_))), "{forced:?}");
    assert_ne!(std::fs::read(dir.ca().cert).unwrap(), ca_before);
    // A missing leaf is issued by the CA that is there.
    std::fs::remove_file(dir.operator().cert).unwrap();
    let refill = init(&dir, &request(false)).unwrap();
    assert_eq!(refill.iter().filter(|o| matches!(o, Outcome::Written(_))).count(), 1, "{refill:?}");
    operator(&dir).unwrap();
}

#[test]
fn another_envoy_is_signed_by_the_same_ca() {
    let dir = scratch("envoy");
    init(&dir, &request(false)).unwrap();
    assert!(matches!(envoy(&dir, "node-b", false).unwrap(), Outcome::Written(_)));
    assert!(matches!(envoy(&dir, "node-b", false).unwrap(), Outcome::Kept(_)));
    load(&dir.ca().cert, &dir.envoy("node-b"), unix_now()).unwrap();
    assert!(matches!(envoy(&dir, "../x", false), Err(TlsError::BadName(_))));
}

#[test]
fn bad_credentials_are_named() {
    let (a, b) = (scratch("bad-a"), scratch("bad-b"));
    init(&a, &request(false)).unwrap();
    init(&b, &request(false)).unwrap();
    // Expired: the same files, a clock two years ahead.
    let later = unix_now() + 2 * 365 * 86_400;
    let e = load(&a.ca().cert, &a.control_plane(), later).unwrap_err();
    assert!(matches!(e, TlsError::Expired { .. }) && e.to_string().contains("control-plane.pem"), "{e}");
    // Signed by another CA.
    let e = load(&a.ca().cert, &b.control_plane(), unix_now()).unwrap_err();
    assert!(matches!(e, TlsError::NotSignedByCa { .. }), "{e}");
    // A key that is not the certificate's.
    let mut mixed = a.control_plane();
    mixed.key = a.operator().key;
    let e = load(&a.ca().cert, &mixed, unix_now()).unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch { .. }) && e.to_string().contains("operator-key.pem"), "{e}");
    // Not a certificate at all.
    std::fs::write(a.control_plane().cert, "not pem").unwrap();
    let e = server(&a).unwrap_err();
    assert!(matches!(e, TlsError::NotACertificate { .. }), "{e}");
    std::fs::write(a.control_plane().cert, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    assert!(matches!(server(&a).unwrap_err(), TlsError::NotACertificate { .. }));
}

#[test]
fn only_well_formed_stagedoor_uris_are_identities() {
    assert_eq!(identity_from_uri("spiffe://stagedoor/node/e2e-1"), Some(PeerIdentity::Envoy { node_id: "e2e-1".into() }));
    assert_eq!(identity_from_uri("spiffe://stagedoor/operator/alice"), Some(PeerIdentity::Operator { name: "alice".into() }));
    for other in ["spiffe://other/node/x", "spiffe://stagedoor/node/", "spiffe://stagedoor/node/a/b", "spiffe://stagedoor/admin/x", "https://stagedoor/node/x"] {
        assert_eq!(identity_from_uri(other), None, "{other}");
    }
}

#[test]
fn init_writes_an_edge_certificate_for_loopback_and_the_extra_names_that_is_no_identity() {
    let dir = scratch("edge");
    let sans = [String::from("gateway.example")];
    init(&dir, &InitRequest { sans: &sans, node_id: "node-a", operator: "ops", force: false }).unwrap();
    // Signed by the CA, within its validity, the key its own.
    load(&dir.ca().cert, &dir.edge(), unix_now()).unwrap();
    let der = der(&dir.edge().cert);
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    let names: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => (*dns).to_owned(),
            x509_parser::extensions::GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
            other => format!("other:{other:?}"),
        })
        .collect();
    assert_eq!(names, ["localhost", "ip:[127, 0, 0, 1]", "ip:[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]", "gateway.example"]);
    // Not the control plane's (no SPIFFE URI) and no client's.
    assert!(matches!(identity_of(&der), PeerIdentity::Unrecognised { .. }));
}
