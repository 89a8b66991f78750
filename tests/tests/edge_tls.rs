#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! HTTPS at the edge through a real Envoy: h2 and http/1.1 by ALPN, the certificate chosen
//! by SNI (served over SDS), HSTS, plain HTTP redirected, a rotated certificate presented on
//! the next handshake while the old connection keeps serving, and upstream TLS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use stagedoor_e2e::fixtures::auth_yaml;
use stagedoor_e2e::ports::free_port;
use stagedoor_e2e::stack::time_until;
use stagedoor_e2e::{Stack, StackOptions};
use stagedoor_test_support::{replace, TestCerts};

fn edge_registry(certs: &TestCerts, https_port: u16, services: &str) -> String {
    let (a_cert, a_key) = certs.paths("a");
    let (b_cert, b_key) = certs.paths("b");
    auth_yaml()
        + &format!(
            "edge_tls:
  port: {https_port}
  hsts: {{ max_age_secs: 31536000, include_subdomains: true }}
  certificates:
    - {{ server_names: [a.test], cert_file: {}, key_file: {} }}
    - {{ server_names: [b.test], cert_file: {}, key_file: {} }}
{services}",
            a_cert.display(),
            a_key.display(),
            b_cert.display(),
            b_key.display()
        )
}

const VENUE: &str = "services:
  - name: venue
    routes: [{ prefix: /api/v1/venues }]
    instances: [{ address: 127.0.0.1, port: 1 }]
    public_paths: [\"/api/v1/venues/public/*\"]
    request_headers: { allow: [\"x-echo-*\"] }
";

/// A client trusting only the test CA, resolving the test names to the gateway, keeping
/// what each response's TLS peer presented.
fn https_client(certs: &TestCerts, https_port: u16, http1_only: bool) -> reqwest::blocking::Client {
    let gateway = SocketAddr::from(([127, 0, 0, 1], https_port));
    let mut builder = reqwest::blocking::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(certs.ca_pem.as_bytes()).unwrap())
        .resolve("a.test", gateway)
        .resolve("b.test", gateway)
        .tls_info(true)
        .timeout(Duration::from_secs(10));
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

fn peer_certificate(response: &reqwest::blocking::Response) -> Vec<u8> {
    response.extensions().get::<reqwest::tls::TlsInfo>().and_then(|t| t.peer_certificate()).expect("TLS info").to_vec()
}

fn wait_https_ready(stack: &Stack, client: &reqwest::blocking::Client, https_port: u16) {
    let url = format!("https://a.test:{https_port}/health");
    let ready = time_until(Duration::from_secs(30), || client.get(&url).send().map(|r| r.status() == 200).unwrap_or(false));
    let waited = ready.unwrap_or_else(|| panic!("HTTPS never answered; logs in {}", stack.dir.display()));
    println!("HTTPS ready after {waited:?}");
}

#[test]
fn https_speaks_h2_and_http11_picks_the_certificate_by_sni_sets_hsts_and_http_redirects() {
    let certs = TestCerts::new("e2e-sni");
    let a = certs.write_leaf("a", &["a.test"], -1, 30).der;
    let b = certs.write_leaf("b", &["b.test"], -1, 30).der;
    let https_port = free_port();
    let stack = Stack::start(StackOptions { registry_yaml: edge_registry(&certs, https_port, VENUE), ..Default::default() });
    let h2 = https_client(&certs, https_port, false);
    wait_https_ready(&stack, &h2, https_port);

    let response = h2.get(format!("https://a.test:{https_port}/api/v1/venues/public/x")).send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(peer_certificate(&response), a);
    assert_eq!(response.headers()["strict-transport-security"], "max-age=31536000; includeSubDomains");

    let http11 = https_client(&certs, https_port, true);
    let response = http11.get(format!("https://b.test:{https_port}/api/v1/venues/public/x")).send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(peer_certificate(&response), b, "SNI b.test gets b's certificate");

    // A local reply (no token) carries HSTS too.
    let response = h2.get(format!("https://a.test:{https_port}/api/v1/venues/1")).send().unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["strict-transport-security"], "max-age=31536000; includeSubDomains");

    // Plain HTTP answers with a redirect to the same path over HTTPS.
    let plain = reqwest::blocking::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = plain.get(stack.url("/api/v1/venues/public/x?q=1")).send().unwrap();
    assert_eq!(response.status(), 301);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("https://") && location.ends_with(&format!(":{https_port}/api/v1/venues/public/x?q=1")), "{location}");
}

#[test]
fn a_rotated_certificate_is_presented_on_the_next_handshake_and_the_old_connection_finishes() {
    rotation(false);
}

#[test]
fn a_rotated_certificate_reaches_a_delta_xds_envoy_too() {
    rotation(true);
}

fn rotation(delta: bool) {
    let certs = TestCerts::new(if delta { "e2e-rotate-delta" } else { "e2e-rotate" });
    let old = certs.write_leaf("a", &["a.test"], -1, 30).der;
    certs.write_leaf("b", &["b.test"], -1, 30);
    let https_port = free_port();
    let stack = Stack::start(StackOptions { registry_yaml: edge_registry(&certs, https_port, VENUE), delta, ..Default::default() });
    let kept = https_client(&certs, https_port, false);
    wait_https_ready(&stack, &kept, https_port);
    let url = format!("https://a.test:{https_port}/api/v1/venues/public/x");
    assert_eq!(peer_certificate(&kept.get(&url).send().unwrap()), old);

    // A request in flight on the kept (h2) connection across the rotation.
    let in_flight = {
        let (kept, url) = (kept.clone(), url.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            let response = kept.get(&url).header("x-echo-delay-ms", "2000").send().unwrap();
            let (status, presented) = (response.status().as_u16(), peer_certificate(&response));
            (status, presented, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let new = certs.write_leaf("a", &["a.test"], -1, 30).der;
    let rotated = time_until(Duration::from_secs(15), || {
        https_client(&certs, https_port, false).get(&url).send().map(|r| peer_certificate(&r) == new).unwrap_or(false)
    });
    let took = rotated.unwrap_or_else(|| panic!("the new certificate was never presented; logs in {}", stack.dir.display()));
    println!("new certificate presented {took:?} after the files were replaced");

    let (status, presented, elapsed) = in_flight.join().unwrap();
    println!("in-flight request took {elapsed:?}");
    assert_eq!(status, 200, "the request in flight completed");
    assert_eq!(presented, old, "on the connection made before the rotation");
    assert!(elapsed >= Duration::from_millis(1900), "it was in flight across the rotation: {elapsed:?}");
    // The kept connection was not dropped: still the old certificate on it.
    assert_eq!(peer_certificate(&kept.get(&url).send().unwrap()), old);
    // No restart: the same Envoy, its listener never changed.
    assert_eq!(stack.envoy_stat(0, "listener_manager.listener_modified"), Some(0));
}

#[test]
fn a_bad_certificate_is_refused_and_the_last_good_one_keeps_serving() {
    let certs = TestCerts::new("e2e-bad");
    let good = certs.write_leaf("a", &["a.test"], -1, 30).der;
    certs.write_leaf("b", &["b.test"], -1, 30);
    let https_port = free_port();
    let stack = Stack::start(StackOptions { registry_yaml: edge_registry(&certs, https_port, VENUE), ..Default::default() });
    let client = https_client(&certs, https_port, false);
    wait_https_ready(&stack, &client, https_port);
    // A key that is not the certificate's.
    let (_, a_key) = certs.paths("a");
    let (_, b_key) = certs.paths("b");
    replace(&a_key, &std::fs::read_to_string(&b_key).unwrap());
    let logged = time_until(Duration::from_secs(10), || stack.control_plane_log().contains("certificate change rejected"));
    assert!(logged.is_some(), "no rejection logged");
    let log = stack.control_plane_log();
    assert!(log.contains(&format!("{}", a_key.display())) && log.contains("does not belong to the certificate"), "{log}");
    // /status names the file, the problem and since when; every served certificate's expiry
    // is listed, these test leaves (30 days) flagged as expiring within the 30-day window.
    let certificates = stack.control_plane_status()["certificates"].clone();
    let problem = &certificates["problems"][0];
    assert_eq!((problem["source"].as_str(), problem["file"].as_str()), (Some("registry"), Some(a_key.display().to_string().as_str())), "{certificates}");
    assert!(problem["problem"].as_str().unwrap().contains("does not belong to the certificate") && problem["since_unix"].is_i64(), "{certificates}");
    let served = certificates["served"].as_array().unwrap();
    let whats: Vec<&str> = served.iter().map(|c| c["what"].as_str().unwrap()).collect();
    assert_eq!(whats, ["control plane", "control plane CA", "edge_tls a.test", "edge_tls b.test"], "{certificates}");
    assert!(served[2]["expiring_soon"] == true && served[2]["days_left"].as_i64() < Some(30) && served[0]["expiring_soon"] == false, "{certificates}");
    let fresh = https_client(&certs, https_port, false);
    let response = fresh.get(format!("https://a.test:{https_port}/health")).send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(peer_certificate(&response), good);
}

#[test]
fn a_service_whose_instances_require_tls_and_a_client_certificate_is_reached_over_tls() {
    let certs = TestCerts::new("e2e-upstream");
    certs.write_leaf("a", &["a.test"], -1, 30);
    certs.write_leaf("b", &["b.test"], -1, 30);
    certs.write_leaf("secure", &["secure.internal"], -1, 30);
    certs.write_leaf("gateway", &["gateway.internal"], -1, 30);
    let https_port = free_port();
    let mut stack = Stack::start(StackOptions { registry_yaml: edge_registry(&certs, https_port, VENUE), ..Default::default() });
    let client = https_client(&certs, https_port, false);
    wait_https_ready(&stack, &client, https_port);
    let (secure_cert, secure_key) = certs.paths("secure");
    let (gateway_cert, gateway_key) = certs.paths("gateway");
    let ca = PathBuf::from(&certs.ca_file);
    let port = stack.start_tls_echo("secure", &secure_cert, &secure_key, Some(&ca));
    let service = |name: &str, tls: &str| {
        format!(
            "  - name: {name}\n    routes: [{{ prefix: /api/v1/{name} }}]\n    instances: [{{ address: 127.0.0.1, port: {port} }}]\n    public_paths: [\"/api/v1/{name}/*\"]\n{tls}"
        )
    };
    let with_client = format!(
        "    tls: {{ ca_file: {}, sni: secure.internal, client_cert_file: {}, client_key_file: {} }}\n",
        ca.display(),
        gateway_cert.display(),
        gateway_key.display()
    );
    let without_client = format!("    tls: {{ ca_file: {}, sni: secure.internal }}\n", ca.display());
    let services = VENUE.to_owned() + &service("secure", &with_client) + &service("noclient", &without_client) + &service("plain", "");
    stack.write_registry(&edge_registry(&certs, https_port, &services));

    let url = |name: &str| format!("https://a.test:{https_port}/api/v1/{name}/x");
    let reached = time_until(Duration::from_secs(15), || client.get(url("secure")).send().map(|r| r.status() == 200).unwrap_or(false));
    let took = reached.unwrap_or_else(|| panic!("the TLS upstream was never reached; logs in {}", stack.dir.display()));
    println!("TLS upstream reached {took:?} after the registry edit");
    let echo: serde_json::Value = client.get(url("secure")).send().unwrap().json().unwrap();
    assert_eq!(echo["service"], "secure");
    assert_eq!(echo["path"], "/api/v1/secure/x");
    // The same upstream refuses the gateway without a client certificate (the handshake
    // fails: 503), and plain text gets TLS bytes back that are no HTTP response (502).
    assert_eq!(client.get(url("noclient")).send().unwrap().status(), 503);
    assert_eq!(client.get(url("plain")).send().unwrap().status(), 502);
}

#[test]
fn a_partner_name_requiring_a_client_certificate_passes_only_certificates_its_ca_signed() {
    let certs = TestCerts::new("partner");
    let partners = TestCerts::new("partner-ca");
    let stranger = TestCerts::new("stranger-ca");
    certs.leaf("a", &["a.test"], -1, 30);
    certs.leaf("partners", &["partners.test"], -1, 30);
    partners.leaf("client", &["client.partner"], -1, 30);
    stranger.leaf("client", &["client.partner"], -1, 30);
    let https_port = free_port();
    let (a_cert, a_key) = certs.paths("a");
    let (p_cert, p_key) = certs.paths("partners");
    let registry = auth_yaml()
        + &format!(
            "edge_tls:
  port: {https_port}
  certificates:
    - {{ server_names: [a.test], cert_file: {}, key_file: {} }}
    - {{ server_names: [partners.test], cert_file: {}, key_file: {}, require_client_certificate: true, client_ca_file: {} }}
{VENUE}",
            a_cert.display(),
            a_key.display(),
            p_cert.display(),
            p_key.display(),
            partners.ca_file
        );
    let stack = Stack::start(StackOptions { registry_yaml: registry, ..Default::default() });
    wait_https_ready(&stack, &https_client(&certs, https_port, false), https_port);
    let gateway = SocketAddr::from(([127, 0, 0, 1], https_port));
    let client_with = |identity: Option<&TestCerts>| {
        let mut builder = reqwest::blocking::Client::builder()
            .no_proxy()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(certs.ca_pem.as_bytes()).unwrap())
            .resolve("partners.test", gateway)
            .resolve("a.test", gateway)
            .timeout(Duration::from_secs(10));
        if let Some(issuer) = identity {
            let (cert, key) = issuer.paths("client");
            let mut pem = std::fs::read(cert).unwrap();
            pem.extend(std::fs::read(key).unwrap());
            builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        builder.build().unwrap()
    };
    let partner_url = format!("https://partners.test:{https_port}/api/v1/venues/public/x");

    // Signed by client_ca_file: passes, and reaches the upstream.
    let response = client_with(Some(&partners)).get(&partner_url).send().unwrap();
    assert_eq!(response.status(), 200);
    // No client certificate, or one from another CA: refused in the handshake (TLS 1.3
    // reports it on the first read, so the request fails either way; no status at all).
    for (what, identity) in [("no certificate", None), ("another CA's certificate", Some(&stranger))] {
        let refused = client_with(identity).get(&partner_url).send();
        println!("{what}: {refused:?}");
        assert!(refused.is_err(), "{what}: {refused:?}");
    }
    // The other name on the same listener asks for no client certificate.
    let response = client_with(None).get(format!("https://a.test:{https_port}/api/v1/venues/public/x")).send().unwrap();
    assert_eq!(response.status(), 200);
    // Envoy counted the refusals on the HTTPS listener: the other CA's certificate failed
    // verification once; "no certificate" counts the a.test request too (not required there).
    let stat = |name: &str| stack.envoy_stat(0, &format!("listener.127.0.0.1_{https_port}.ssl.{name}"));
    println!("fail_verify_error {:?}, no_certificate {:?}", stat("fail_verify_error"), stat("no_certificate"));
    assert_eq!(stat("fail_verify_error"), Some(1));
    assert!(stat("no_certificate") >= Some(1));
}
