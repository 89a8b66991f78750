#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Incremental (delta) xDS, chosen by the Envoy bootstrap: the same config, the same
//! behaviour, and only what changed on the wire.

use std::time::Duration;

use stagedoor_e2e::fixtures::auth_yaml;
use stagedoor_e2e::stack::time_until;
use stagedoor_e2e::{Stack, StackOptions};

#[test]
fn a_delta_envoy_routes_follows_edits_and_drops_removed_services() {
    let registry = auth_yaml()
        + r#"
services:
  - name: venue
    routes: [{ prefix: /api/v1/venues }]
    instances: [{ address: 127.0.0.1, port: 1 }]
"#;
    let mut stack = Stack::start(StackOptions { registry_yaml: registry, delta: true, redis: true, ..Default::default() });
    stack.wait_ready();
    assert_eq!(stack.get_as_admin("/api/v1/venues/1").1["service"], "venue");
    let status = stack.control_plane_status();
    assert_eq!(status["envoys"][0]["protocol"], "delta", "{status}");

    let extra = stack.start_echo("extra");
    stack.add_service(&format!("{{ name: extra, routes: [{{ prefix: /api/v1/extra }}], instances: [{{ address: 127.0.0.1, port: {extra} }}] }}"));
    assert!(time_until(Duration::from_secs(2), || stack.get_as_admin("/api/v1/extra/1").0 == 200).is_some(), "added over delta");

    // A live instance arrives as one EDS resource.
    let live = stack.start_echo("venue");
    let out = std::process::Command::new(stagedoor_e2e::stack::stagedoor_bin())
        .args(["register", "--service", "venue", "--address", "127.0.0.1", "--port", &live.to_string()])
        .args(["--redis", &stack.redis_url().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let admin = stack.envoys[0].admin_port;
    let seen = time_until(Duration::from_secs(2), || {
        let clusters = stagedoor_e2e::stack::client().get(format!("http://127.0.0.1:{admin}/clusters")).send().unwrap().text().unwrap();
        clusters.contains(&format!("svc_venue::127.0.0.1:{live}::"))
    });
    assert!(seen.is_some(), "the live instance reached Envoy over delta EDS");

    let without_extra = stack.registry();
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&without_extra).unwrap();
    doc["services"].as_sequence_mut().unwrap().retain(|s| s["name"] != "extra");
    stack.write_registry(&serde_yaml::to_string(&doc).unwrap());
    assert!(time_until(Duration::from_secs(2), || stack.get_as_admin("/api/v1/extra/1").0 == 404).is_some(), "route removed");
    let gone = time_until(Duration::from_secs(10), || !stack.config_dump(0).contains("svc_extra"));
    assert!(gone.is_some(), "the cluster is named in removed_resources after its routes");
    let status = stack.control_plane_status();
    assert!(status["last_nack"].is_null(), "{status}");
}
