#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Which filter module the control plane pushes: with `--wasm-hmac`, the HMAC-only build
//! for a registry whose token keys are all HMAC secrets (smaller, less memory in each of
//! Envoy's VMs: issue 18), and that build serving the identity as the full one does.

use serde_json::json;
use stagedoor_e2e::fixtures::{auth_yaml, bearer};
use stagedoor_e2e::raw;
use stagedoor_e2e::stack::{hmac_wasm_path, wasm_path};
use stagedoor_e2e::{Stack, StackOptions};

#[test]
fn an_hmac_only_registry_runs_the_hmac_only_module_with_the_same_identity() {
    let hmac = hmac_wasm_path();
    assert!(hmac.is_file(), "{} missing: run scripts/build-filter.sh --hmac-only", hmac.display());
    let hmac = std::fs::canonicalize(hmac).unwrap().display().to_string();
    let registry = auth_yaml()
        + r#"
services:
  - name: venue
    routes: [{ prefix: /api/v1/venues }]
    instances: [{ address: 127.0.0.1, port: 1 }]
"#;
    let stack = Stack::start(StackOptions {
        registry_yaml: registry,
        serve_args: vec![String::from("--wasm-hmac"), hmac.clone()],
        ..Default::default()
    });
    stack.wait_ready();
    let dump = stack.config_dump(0);
    assert!(dump.contains(&hmac), "Envoy loads the HMAC-only module");
    let full = std::fs::canonicalize(wasm_path()).unwrap().display().to_string();
    assert!(!dump.contains(&full), "and not the full one");

    let auth = format!("Authorization: {}", bearer(json!({})));
    let r = raw::request(stack.gateway_port, "GET", "/api/v1/venues/v1", &[&auth, "X-Tenant-ID: evil"], "");
    assert_eq!(r.status, 200, "{}", r.body);
    let h = &r.json()["headers"];
    assert_eq!(h["x-tenant-id"], json!(["t1"]));
    assert_eq!(h["x-tenant-source"], json!(["jwt"]));
    assert_eq!(h["x-user-id"], json!(["u1"]));
    let forged = stagedoor_e2e::fixtures::token_with_secret(json!({}), "not-the-secret-not-the-secret-0123456");
    let r = raw::request(stack.gateway_port, "GET", "/api/v1/venues/v1", &[&format!("Authorization: Bearer {forged}")], "");
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["code"], "TOKEN_INVALID_SIGNATURE");
}
