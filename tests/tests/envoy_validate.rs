#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Envoy's own `--mode validate` on what the control plane would push.
//!
//! `stagedoor validate --envoy` renders a registry's snapshot as a static bootstrap and runs
//! Envoy on it: a registry Envoy refuses although the control plane's checks pass (a hash
//! header or a health-check path with a newline: Envoy's header rules, not ours) fails with
//! Envoy's message and the registry entry behind it; and every registry the e2e suite
//! shares (the shipped one, the default stack's, one with every traffic and edge option)
//! passes, so the suite pushes nothing Envoy would NACK.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use stagedoor_e2e::fixtures::{auth_yaml, registry_with};
use stagedoor_e2e::ports::free_port;
use stagedoor_e2e::stack::{stagedoor_bin, wasm_path, workspace_root};

/// A directory of its own under the system's temporary one, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("stagedoor-envoy-validate-{name}-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `stagedoor validate [--envoy]` on `file`, with the harness's Envoy (ENVOY_BIN, else PATH).
fn validate(file: &Path, with_envoy: bool) -> Output {
    let mut command = Command::new(stagedoor_bin());
    command.arg("validate").arg(file);
    if with_envoy {
        command.arg("--envoy").arg("--wasm").arg(wasm_path());
        if let Some(bin) = std::env::var_os("ENVOY_BIN") {
            command.arg("--envoy-bin").arg(bin);
        }
    }
    command.output().expect("run stagedoor validate")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn venue_with_traffic(traffic: &str) -> String {
    auth_yaml() + &format!("services:\n  - name: venue\n    routes: [{{ prefix: /api/v1/venues }}]\n    instances: [{{ address: 127.0.0.1, port: 9000 }}]\n    traffic: {traffic}\n")
}

#[test]
fn a_registry_envoy_refuses_but_our_checks_pass_fails_with_envoys_message_and_the_registry_entry() {
    let scratch = Scratch::new("refused");
    let cases = [
        (
            "hash-header",
            r#"{ load_balancing: { policy: ring_hash, hash_header: "x\nuser" } }"#,
            "HashPolicyValidationError.Header",
            "(service venue, route /api/v1/venues, traffic.load_balancing)",
        ),
        (
            "health-path",
            r#"{ health_check: { path: "/health\nx" } }"#,
            "HttpHealthCheckValidationError.Path",
            "from CDS svc_venue (service venue, traffic.health_check)",
        ),
    ];
    for (name, traffic, envoys_words, entry) in cases {
        let file = scratch.write(&format!("{name}.yaml"), &venue_with_traffic(traffic));
        let ours = validate(&file, false);
        assert!(ours.status.success(), "{name}: the control plane's own checks let it through: {}", text(&ours));
        let out = validate(&file, true);
        let said = text(&out);
        eprintln!("{name}: {said}");
        assert!(!out.status.success(), "{name}: Envoy's refusal fails the command");
        assert!(said.contains("Envoy refuses the snapshot: Proto constraint validation failed") && said.contains(envoys_words), "{name}: Envoy's message: {said}");
        assert!(said.contains(entry), "{name}: the registry entry behind it: {said}");
        assert!(!said.contains("node {"), "{name}: Envoy's dump of the whole config is left out: {said}");
    }
}

#[test]
fn without_an_envoy_binary_validate_envoy_says_so_and_fails() {
    let scratch = Scratch::new("no-envoy");
    let file = scratch.write("ok.yaml", &registry_with(""));
    let out = Command::new(stagedoor_bin()).arg("validate").arg(&file).arg("--envoy").env("PATH", &scratch.0).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("no envoy binary on PATH"), "{}", text(&out));
    let missing = scratch.0.join("no-such-envoy");
    let out = Command::new(stagedoor_bin()).arg("validate").arg(&file).arg("--envoy").arg("--envoy-bin").arg(&missing).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains(&format!("--envoy-bin {}: no such file", missing.display())), "{}", text(&out));
}

/// Every traffic option, CORS, webhooks, global rate limits and TLS to an upstream.
fn every_option_registry(tls_dir: &Path) -> String {
    let d = tls_dir.display();
    auth_yaml()
        + &format!(
            r#"cors:
  allowed_origins: [https://app.tickettoken.com]
  allow_credentials: true
webhooks:
  - {{ path: /webhooks/stripe, stripe_secret: whsec_e2e_test }}
rate_limit: {{ requests: 100, window_ms: 60000 }}
global_rate_limit:
  salt: e2e-salt
  limits:
    - {{ name: api, requests: 10, period_ms: 6000, routes: [/api/v1/venues] }}
    - {{ name: login, requests: 2, period_ms: 60000, per: address, routes: [/api/v1/auth/login] }}
services:
  - name: venue
    routes: [{{ prefix: /api/v1/venues }}]
    instances: [{{ address: 127.0.0.1, port: 9000 }}, {{ address: 127.0.0.1, port: 9001 }}]
    traffic:
      timeout_ms: 400
      retries: {{ attempts: 3, base_interval_ms: 10, max_interval_ms: 50 }}
      load_balancing: {{ policy: maglev, hash_header: x-user-id }}
      health_check: {{ path: /health, interval_ms: 1000, timeout_ms: 500 }}
      circuit_breaker: {{ error_threshold_percentage: 50, volume_threshold: 20, reset_timeout_ms: 30000, max_connections: 100 }}
  - name: auth
    routes: [{{ prefix: /api/v1/auth }}]
    public_paths: [/api/v1/auth/login]
    instances: [{{ address: 127.0.0.1, port: 9002 }}]
    traffic: {{ load_balancing: {{ policy: ring_hash, hash_cookie: session }} }}
  - name: payment
    routes:
      - {{ prefix: /api/v1/payments }}
      - {{ prefix: /webhooks, upstream_prefix: /api/v1/webhooks }}
    public_paths: ["/webhooks/*"]
    instances: [{{ address: 127.0.0.1, port: 9003 }}]
    tls: {{ ca_file: {d}/ca.pem, sni: secure.internal, client_cert_file: {d}/edge.pem, client_key_file: {d}/edge-key.pem }}
"#
        )
}

#[test]
fn every_registry_the_suite_shares_passes_envoys_own_validation() {
    let scratch = Scratch::new("fixtures");
    let tls_dir = scratch.0.join("tls");
    let init = Command::new(stagedoor_bin()).args(["certs", "init", "--dir"]).arg(&tls_dir).output().unwrap();
    assert!(init.status.success(), "{}", text(&init));
    let shipped = std::fs::read_to_string(workspace_root().join("registry/tickettoken.yaml")).unwrap();
    let fixtures = [
        ("registry/tickettoken.yaml", shipped.replace(".stagedoor/", &format!("{}/", tls_dir.display()))),
        ("the default stack's (fixtures::registry_with)", registry_with("")),
        ("every option", every_option_registry(&tls_dir)),
    ];
    let files: Vec<(&str, PathBuf)> = fixtures.iter().enumerate().map(|(i, (name, yaml))| (*name, scratch.write(&format!("{i}.yaml"), yaml))).collect();
    // Two at a time: Envoy compiles the filter's module in validate mode (seconds of CPU).
    let queue = Mutex::new(files.clone());
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let Some((name, file)) = queue.lock().unwrap().pop() else { break };
                let out = validate(&file, true);
                results.lock().unwrap().push((name, out.status.success(), text(&out)));
            });
        }
    });
    let results = results.into_inner().unwrap();
    assert_eq!(results.len(), files.len());
    for (name, passed, said) in &results {
        eprintln!("{name}: {said}");
        assert!(passed, "{name}: Envoy refuses it: {said}");
        assert!(said.contains("--mode validate: configuration") && said.contains("OK"), "{name}: Envoy's own OK: {said}");
    }
}
