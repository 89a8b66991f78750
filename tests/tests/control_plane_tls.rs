#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The control plane's own certificate: rotated without a restart (the next handshake on
//! the gRPC and HTTP ports presents the new one while the Envoy's open ADS stream keeps
//! working), a bad new file refused, named in the log and /status while the last good one
//! keeps serving, the expiry of every served certificate in /status, and an Envoy
//! certificate from another CA refused in the handshake and logged with the reason and the
//! peer's address.

use std::path::Path;
use std::time::{Duration, Instant};

use stagedoor_e2e::fixtures::registry_with;
use stagedoor_e2e::stack::time_until;
use stagedoor_e2e::{Stack, StackOptions};

/// The certificate the server on `port` presents to a new connection (a client trusting
/// the stack's CA), or None when the handshake fails.
fn presented(tls_dir: &Path, port: u16) -> Option<Vec<u8>> {
    let ca = std::fs::read(tls_dir.join("ca.pem")).unwrap();
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .tls_info(true)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let response = client.get(format!("https://127.0.0.1:{port}/healthz")).send().ok()?;
    response.extensions().get::<reqwest::tls::TlsInfo>()?.peer_certificate().map(<[u8]>::to_vec)
}

fn der_of(pem_path: &Path) -> Vec<u8> {
    use base64::Engine;
    let text = std::fs::read_to_string(pem_path).unwrap();
    let body: String = text.lines().take_while(|l| !l.starts_with("-----END")).filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).unwrap()
}

fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A control-plane server certificate signed by the stack's CA, valid from `from_days`
/// to `to_days` around now: (cert PEM, key PEM).
fn control_plane_leaf(tls_dir: &Path, from_days: i64, to_days: i64) -> (String, String) {
    let ca = std::fs::read_to_string(tls_dir.join("ca.pem")).unwrap();
    let ca_key = std::fs::read_to_string(tls_dir.join("ca-key.pem")).unwrap();
    stagedoor_test_support::identity_leaf_signed_by(&ca, &ca_key, "stagedoor control plane (rotated)", "spiffe://stagedoor/control-plane", from_days, to_days)
}

#[test]
fn a_rotated_control_plane_certificate_is_presented_on_the_next_handshake_and_the_ads_stream_keeps_working() {
    let mut stack = Stack::start(StackOptions { registry_yaml: registry_with(""), ..Default::default() });
    stack.wait_ready();
    let (cert_path, key_path) = (stack.tls_dir.join("control-plane.pem"), stack.tls_dir.join("control-plane-key.pem"));
    let old = der_of(&cert_path);
    assert_eq!(presented(&stack.tls_dir, stack.xds_port), Some(old.clone()));
    assert_eq!(presented(&stack.tls_dir, stack.http_port), Some(old.clone()));
    let stream_before = stack.control_plane_status()["envoys"][0]["stream_id"].clone();
    assert!(stream_before.is_u64(), "{}", stack.control_plane_status());

    // Key first, then certificate, each by rename: between the two the pair does not match
    // and is refused; once both are there it is served.
    let (cert_pem, key_pem) = control_plane_leaf(&stack.tls_dir, -1, 90);
    let started = Instant::now();
    replace(&key_path, &key_pem);
    replace(&cert_path, &cert_pem);
    let new = der_of(&cert_path);
    let on_grpc = time_until(Duration::from_secs(10), || presented(&stack.tls_dir, stack.xds_port).as_ref() == Some(&new));
    let took = on_grpc.unwrap_or_else(|| panic!("the gRPC port never presented the new certificate; logs in {}", stack.dir.display()));
    println!("new certificate on the gRPC port {took:?} after the files were replaced ({:?} since the first)", started.elapsed());
    assert_eq!(presented(&stack.tls_dir, stack.http_port), Some(new.clone()), "the HTTP side too");
    assert!(stack.control_plane_log().contains("control-plane certificate reloaded"));

    // The Envoy's ADS stream, opened before, is the same one and still carries pushes.
    let extra_port = stack.start_echo("extra");
    stack.add_service(&format!("{{ name: extra, routes: [{{ prefix: /api/v1/extra }}], instances: [{{ address: 127.0.0.1, port: {extra_port} }}] }}"));
    let reached = time_until(Duration::from_secs(10), || stack.get_as_admin("/api/v1/extra/1").0 == 200);
    println!("registry edit after the rotation served in {reached:?}");
    assert!(reached.is_some(), "the push after the rotation never reached Envoy; logs in {}", stack.dir.display());
    let status = stack.control_plane_status();
    assert_eq!(status["envoys"][0]["stream_id"], stream_before, "no reconnect: {status}");
    assert_eq!(stack.envoy_stat(0, "control_plane.connected_state"), Some(1));
    // /status shows the new certificate's expiry (90 days: not flagged) and no problem.
    let certificates = &status["certificates"];
    let own = certificates["served"].as_array().unwrap().iter().find(|c| c["what"] == "control plane").unwrap();
    assert!(own["subject"].as_str().unwrap().contains("rotated") && own["expiring_soon"] == false, "{own}");
    assert_eq!(certificates["problems"], serde_json::json!([]), "{certificates}");
}

#[test]
fn a_bad_control_plane_certificate_is_refused_named_in_log_and_status_and_the_last_good_keeps_serving() {
    let stack = Stack::start(StackOptions { registry_yaml: registry_with(""), ..Default::default() });
    stack.wait_ready();
    let (cert_path, key_path) = (stack.tls_dir.join("control-plane.pem"), stack.tls_dir.join("control-plane-key.pem"));
    let good = der_of(&cert_path);
    let (good_cert, good_key) = (std::fs::read_to_string(&cert_path).unwrap(), std::fs::read_to_string(&key_path).unwrap());
    let (expired_cert, expired_key) = control_plane_leaf(&stack.tls_dir, -30, -1);
    let other_key = std::fs::read_to_string(stack.tls_dir.join("operator-key.pem")).unwrap();
    let cases: [(&str, String, String, &str, &Path); 3] = [
        ("no parse", String::from("garbage\n"), good_key.clone(), "not a PEM certificate", &cert_path),
        ("key mismatch", good_cert.clone(), other_key, "does not belong to the certificate", &key_path),
        ("expired", expired_cert, expired_key, "expired on", &cert_path),
    ];
    for (what, cert, key, reason, named) in cases {
        let before = Instant::now();
        replace(&key_path, &key);
        replace(&cert_path, &cert);
        let named = named.display().to_string();
        let reported = time_until(Duration::from_secs(10), || {
            let problems = stack.control_plane_status()["certificates"]["problems"].clone();
            problems.as_array().is_some_and(|p| p.iter().any(|p| p["source"] == "control_plane" && p["file"] == named.as_str() && p["problem"].as_str().unwrap_or("").contains(reason)))
        });
        let status = stack.control_plane_status();
        assert!(reported.is_some(), "{what}: not in /status: {}", status["certificates"]);
        println!("{what}: in /status after {:?}: {}", before.elapsed(), status["certificates"]["problems"]);
        assert!(status["certificates"]["problems"][0]["since_unix"].is_i64());
        let log = stack.control_plane_log();
        assert!(log.contains("control-plane certificate change refused") && log.contains(reason), "{what}: {log}");
        assert_eq!(presented(&stack.tls_dir, stack.xds_port), Some(good.clone()), "{what}: the last good certificate keeps serving");
        assert_eq!(presented(&stack.tls_dir, stack.http_port), Some(good.clone()), "{what}");
    }
    // The good files back: the problem clears.
    replace(&key_path, &good_key);
    replace(&cert_path, &good_cert);
    let cleared = time_until(Duration::from_secs(10), || stack.control_plane_status()["certificates"]["problems"] == serde_json::json!([]));
    assert!(cleared.is_some(), "{}", stack.control_plane_status()["certificates"]);
    // Envoy kept its stream and its config throughout.
    assert_eq!(stack.get("/health").0, 200);
}

#[test]
fn an_envoy_certificate_from_another_ca_is_refused_in_the_handshake_and_logged_with_reason_and_peer() {
    let stack = Stack::start(StackOptions { registry_yaml: registry_with(""), ..Default::default() });
    // Another CA's certificate claiming to be an Envoy.
    let (cert, key) = stagedoor_test_support::identity_leaf_from_a_stranger_ca("envoy intruder", "spiffe://stagedoor/node/intruder", -1, 30);
    let ca = std::fs::read(stack.tls_dir.join("ca.pem")).unwrap();
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for port in [stack.xds_port, stack.http_port] {
        let refused = client.get(format!("https://127.0.0.1:{port}/healthz")).send();
        println!("port {port}: {refused:?}");
        assert!(refused.is_err(), "port {port}: {refused:?}");
    }
    let logged = time_until(Duration::from_secs(5), || stack.control_plane_log().matches("client certificate refused in the TLS handshake").count() >= 2);
    let log = stack.control_plane_log();
    assert!(logged.is_some(), "{log}");
    let line = log.lines().find(|l| l.contains("client certificate refused") && l.contains("Grpc")).unwrap_or_else(|| panic!("{log}"));
    println!("{line}");
    assert!(line.contains("peer=127.0.0.1:") && line.contains("UnknownIssuer"), "{line}");
    let metrics = stagedoor_e2e::stack::client().get(format!("http://127.0.0.1:{}/metrics", stack.metrics_port)).send().unwrap().text().unwrap();
    assert!(metrics.contains("stagedoor_client_certificates_refused_total 2"), "{metrics}");
}
