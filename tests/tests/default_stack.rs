#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The stack as scripts/run.sh runs it: the shipped registry (registry/tickettoken.yaml)
//! with the credentials `stagedoor certs init` writes, HTTPS at the edge by default.

use std::time::Duration;

use stagedoor_e2e::fixtures::{bearer, SECRET};
use stagedoor_e2e::stack::{https_client, workspace_root};
use stagedoor_e2e::{Stack, StackOptions};

/// The shipped registry as it is, but for the development secret (the tests' own) and the
/// ports (the harness gives free ones).
fn shipped_registry() -> String {
    let yaml = std::fs::read_to_string(workspace_root().join("registry/tickettoken.yaml")).unwrap();
    let dev_secret = "stagedoor-dev-secret-change-me-0123456789";
    assert!(yaml.contains(dev_secret));
    yaml.replace(dev_secret, SECRET)
}

fn peer_certificate(response: &reqwest::blocking::Response) -> Vec<u8> {
    response.extensions().get::<reqwest::tls::TlsInfo>().and_then(|t| t.peer_certificate()).expect("TLS info").to_vec()
}

#[test]
fn the_shipped_registry_serves_https_with_the_certs_init_certificate_and_redirects_plain_http() {
    let stack = Stack::start(StackOptions { registry_yaml: shipped_registry(), ..Default::default() });
    stack.wait_ready();
    let https_port = stack.https_port.expect("the shipped registry serves HTTPS");
    let edge_pem = std::fs::read(stack.tls_dir.join("edge.pem")).unwrap();
    let edge_der = pem_to_der(&edge_pem);

    // `curl --cacert .stagedoor/ca.pem https://localhost:8443/...`, and by IP (no SNI):
    // both get the edge certificate, and a proxied request reaches its upstream.
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(stack.tls_dir.join("ca.pem")).unwrap()).unwrap())
        .tls_info(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for host in ["localhost", "127.0.0.1"] {
        let response = client
            .get(format!("https://{host}:{https_port}/api/v1/venues/7"))
            .header("authorization", bearer(serde_json::json!({"role": "admin"})))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200, "{host}");
        assert_eq!(peer_certificate(&response), edge_der, "{host}: the certificate certs init wrote");
        let echo: serde_json::Value = response.json().unwrap();
        assert_eq!((echo["service"].as_str(), echo["path"].as_str()), (Some("venue"), Some("/api/v1/venues/7")), "{host}");
    }
    assert_eq!(https_client(&stack.tls_dir).get(stack.https_url("/health").unwrap()).send().unwrap().status(), 200);

    // A client without the development CA refuses the certificate.
    let without_ca = reqwest::blocking::Client::builder().no_proxy().use_rustls_tls().timeout(Duration::from_secs(10)).build().unwrap();
    let refused = without_ca.get(stack.https_url("/health").unwrap()).send().unwrap_err();
    println!("without the CA: {refused:?}");
    assert!(refused.is_connect(), "{refused:?}");

    // The plain port answers 301 to the same path on the HTTPS port.
    let plain = reqwest::blocking::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = plain.get(stack.url("/api/v1/venues/7?q=1")).send().unwrap();
    assert_eq!(response.status(), 301);
    let location = response.headers()["location"].to_str().unwrap();
    assert!(location.starts_with("https://") && location.ends_with(&format!(":{https_port}/api/v1/venues/7?q=1")), "{location}");
}

/// The DER of the one PEM certificate in `pem`.
fn pem_to_der(pem: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let text = String::from_utf8_lossy(pem);
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).unwrap()
}
