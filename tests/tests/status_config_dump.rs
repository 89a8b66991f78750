#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `stagedoor status --node N --config-dump URL` against real Envoys' admin ports: an Envoy
//! runs what it ACKed (nothing printed), before and after an edit, a NACKing one too (it
//! keeps its last good cluster, which is what it ACKed). The differences themselves are
//! unit-tested (config_dump_diff_tests.rs): no real Envoy runs what it did not ACK.

use std::time::Duration;

use serde_json::Value;
use stagedoor_e2e::fixtures::auth_yaml;
use stagedoor_e2e::stack::time_until;
use stagedoor_e2e::status_cli::{status, text};
use stagedoor_e2e::{Stack, StackOptions};

fn envoy_json(stack: &Stack, node: &str) -> Value {
    let out = status(stack, &["-o", "json"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json["envoys"].as_array().and_then(|e| e.iter().find(|e| e["node_id"] == node)).cloned().unwrap_or(Value::Null)
}

/// The differences `status --node node --config-dump admin` prints, one per line.
fn differences(stack: &Stack, node: &str, admin_port: u16) -> Vec<String> {
    let out = status(stack, &["--node", node, "--config-dump", &format!("http://127.0.0.1:{admin_port}")]);
    assert!(out.status.success(), "status --config-dump: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    stdout.lines().skip_while(|l| !l.contains("runs otherwise than it ACKed")).skip(1).map(str::to_owned).collect()
}

#[test]
fn the_config_dump_diff_is_empty_for_envoys_running_what_they_acked_before_and_after_a_nack() {
    let registry = auth_yaml() + "services:\n  - name: venue\n    routes: [{ prefix: /api/v1/venues }]\n    instances: [{ address: 127.0.0.1, port: 1 }]\n";
    let mut stack = Stack::start(StackOptions { registry_yaml: registry, ..Default::default() });
    let good = stack.envoys[0].node_id.clone();
    let bad = format!("{good}-no-maglev");
    stack.start_envoy_with_args(&bad, &["--disable-extensions", "envoy.load_balancing_policies/envoy.load_balancing_policies.maglev"]);
    stack.wait_ready();
    let out = status(&stack, &["--wait-synced", "--timeout", "30s"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let (good_admin, bad_admin) = (stack.envoys[0].admin_port, stack.envoys[1].admin_port);
    assert_eq!(differences(&stack, &good, good_admin), Vec::<String>::new());
    assert_eq!(differences(&stack, &bad, bad_admin), Vec::<String>::new());

    let mut doc: serde_yaml::Value = serde_yaml::from_str(&stack.registry()).unwrap();
    doc["services"][0]["traffic"] = serde_yaml::from_str("{ load_balancing: { policy: maglev, hash_header: x-user-id } }").unwrap();
    stack.write_registry(&serde_yaml::to_string(&doc).unwrap());
    let nacked = time_until(Duration::from_secs(15), || envoy_json(&stack, &bad)["types"]["CDS"]["state"] == "NACKED");
    assert!(nacked.is_some(), "{:#}", envoy_json(&stack, &bad));
    let synced = time_until(Duration::from_secs(10), || envoy_json(&stack, &good)["state"] == "SYNCED");
    assert!(synced.is_some(), "{:#}", envoy_json(&stack, &good));

    assert_eq!(differences(&stack, &good, good_admin), Vec::<String>::new(), "the accepting Envoy runs the edit");
    assert_eq!(differences(&stack, &bad, bad_admin), Vec::<String>::new(), "the refusing one runs its last good cluster, as ACKed");
    eprintln!("no difference on either Envoy before and after the NACK");
}
