use crate::registry::Registry;
use crate::test_support::{registry_yaml, TestCerts};

fn edge_registry(certificates: &str, extra: &str) -> String {
    registry_yaml(&format!(
        "edge_tls:\n  port: 8443\n{extra}  certificates:\n{certificates}services:\n  - name: venue\n    routes: [{{ prefix: /api/v1/venues }}]\n"
    ))
}

fn certificate(names: &str, cert: &str, key: &str) -> String {
    format!("    - {{ server_names: [{names}], cert_file: {cert}, key_file: {key} }}\n")
}

fn error_of(yaml: &str) -> String {
    Registry::parse("reg.yaml", yaml).unwrap_err().to_string()
}

#[test]
fn edge_certificates_are_read_checked_and_versioned_by_their_content() {
    let certs = TestCerts::new("good");
    let (a_cert, a_key) = certs.leaf("a", &["a.test"], -1, 30);
    let (b_cert, b_key) = certs.leaf("b", &["b.test"], -1, 30);
    let yaml = edge_registry(&(certificate("a.test", &a_cert, &a_key) + &certificate("b.test", &b_cert, &b_key)), "  hsts: { max_age_secs: 600 }\n");
    let registry = Registry::parse("reg.yaml", &yaml).unwrap();
    let edge = registry.edge_tls.as_ref().unwrap();
    assert_eq!(edge.certificates.len(), 2);
    assert!(edge.certificates[0].pair.cert_pem.contains("BEGIN CERTIFICATE"));
    assert_eq!(edge.hsts.as_ref().unwrap().header_value(), "max-age=600");
    assert_eq!(registry.certificate_files(), vec![a_cert.clone(), a_key.clone(), b_cert.clone(), b_key.clone()]);
    // Same file text, new certificate content: a new version (what the watcher relies on).
    let (_, _) = certs.leaf("a", &["a.test"], -1, 30);
    let rotated = Registry::parse("reg.yaml", &yaml).unwrap();
    assert_ne!(rotated.version, registry.version);
    // The file is written back as it was: paths, not PEM.
    let written = serde_yaml::to_string(&rotated.to_file(true)).unwrap();
    assert!(written.contains(&a_cert) && !written.contains("PRIVATE KEY"), "{written}");
}

#[test]
fn a_bad_certificate_names_the_certificate_and_the_field() {
    let certs = TestCerts::new("bad");
    let (cert, key) = certs.leaf("a", &["a.test"], -1, 30);
    let (other_cert, other_key) = certs.leaf("b", &["b.test"], -1, 30);
    let (old_cert, old_key) = certs.leaf("old", &["a.test"], -30, -1);
    let garbage = certs.dir.join("garbage.pem").display().to_string();
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n").unwrap();

    let e = error_of(&edge_registry(&certificate("a.test", &cert, &other_key), ""));
    assert!(e.starts_with("reg.yaml: edge_tls.certificates[0]: key_file: ") && e.contains("does not belong to the certificate"), "{e}");
    let e = error_of(&edge_registry(&certificate("a.test", &old_cert, &old_key), ""));
    assert!(e.starts_with("reg.yaml: edge_tls.certificates[0]: cert_file: ") && e.contains("expired"), "{e}");
    let e = error_of(&edge_registry(&certificate("a.test", &garbage, &key), ""));
    assert!(e.starts_with("reg.yaml: edge_tls.certificates[0]: cert_file: ") && e.contains("not a PEM certificate"), "{e}");
    let e = error_of(&edge_registry(&(certificate("a.test", &cert, &key) + &certificate("a.test", &other_cert, &other_key)), ""));
    assert!(e.contains("edge_tls.certificates[1]: server_names: a.test is named by two certificates"), "{e}");
    let e = error_of(&edge_registry(&certificate("a.test", "/nonexistent/cert.pem", &key), ""));
    assert!(e.contains("edge_tls.certificates[0]: cert_file: /nonexistent/cert.pem: "), "{e}");
    let partner = format!("    - {{ server_names: [a.test], cert_file: {cert}, key_file: {key}, require_client_certificate: true }}\n");
    let e = error_of(&edge_registry(&partner, ""));
    assert!(e.contains("edge_tls.certificates[0]: client_ca_file: require_client_certificate needs"), "{e}");
    let e = error_of(&edge_registry(&certificate("a.test", &cert, &key), "  hsts: { max_age_secs: 60, preload: true }\n"));
    assert!(e.contains("edge_tls: hsts.preload"), "{e}");
}

#[test]
fn certificates_can_come_from_the_environment() {
    let certs = TestCerts::new("env");
    let (cert, key) = certs.leaf("a", &["a.test"], -1, 30);
    let (cert_pem, key_pem) = (std::fs::read_to_string(&cert).unwrap(), std::fs::read_to_string(&key).unwrap());
    let yaml = edge_registry("    - { server_names: [a.test], cert_env: EDGE_CERT, key_env: EDGE_KEY }\n", "");
    let env = |name: &str| match name {
        "EDGE_CERT" => Some(cert_pem.clone()),
        "EDGE_KEY" => Some(key_pem.clone()),
        _ => None,
    };
    let registry = Registry::parse_with_env("reg.yaml", &yaml, &env).unwrap();
    assert_eq!(registry.edge_tls.unwrap().certificates[0].pair.key_pem, key_pem);
    let e = Registry::parse_with_env("reg.yaml", &yaml, &|_| None).unwrap_err().to_string();
    assert!(e.contains("edge_tls.certificates[0]: cert_env: EDGE_CERT is not set"), "{e}");
}

#[test]
fn upstream_tls_needs_a_ca_that_parses_and_both_halves_of_a_client_certificate() {
    let certs = TestCerts::new("upstream");
    let (cert, key) = certs.leaf("client", &["gateway"], -1, 30);
    let service = |tls: &str| {
        registry_yaml(&format!("services:\n  - name: venue\n    routes: [{{ prefix: /v }}]\n    tls: {tls}\n"))
    };
    let ok = Registry::parse("reg.yaml", &service(&format!("{{ ca_file: {}, sni: venue.internal, client_cert_file: {cert}, client_key_file: {key} }}", certs.ca_file))).unwrap();
    let tls = &ok.upstream_tls["venue"];
    assert_eq!(tls.sni.as_deref(), Some("venue.internal"));
    assert!(tls.client.is_some());
    let e = error_of(&service(&format!("{{ ca_file: {key} }}")));
    assert!(e.starts_with("reg.yaml: service \"venue\": tls.ca_file: "), "{e}");
    let e = error_of(&service(&format!("{{ ca_file: {}, client_cert_file: {cert} }}", certs.ca_file)));
    assert!(e.contains("tls.client_cert_file: give both"), "{e}");
}
