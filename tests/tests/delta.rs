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
        .args(["--registry", &stack.registry_path.display().to_string()])
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

/// One edit adds a service and changes another's cluster to one this Envoy refuses (its
/// load balancer is an extension the Envoy was started without). Envoy takes the new
/// cluster and NACKs the response naming the refused one. Issue 10 (item 6) held the whole
/// edit's routes back until the fix; issue 16's quarantine holds back only the refused
/// cluster: the new service's cluster goes again, its ACK releases the routes (make before
/// break still: never a route before its cluster is ACKed), and the refused service keeps
/// its last good cluster until the fix.
#[test]
fn a_delta_envoy_that_rejects_a_cluster_quarantines_it_and_takes_the_rest_of_the_edit() {
    let registry = auth_yaml()
        + r#"
services:
  - name: venue
    routes: [{ prefix: /api/v1/venues }]
    instances: [{ address: 127.0.0.1, port: 1 }]
"#;
    let mut stack = Stack::start(StackOptions {
        registry_yaml: registry,
        delta: true,
        envoy_args: vec!["--disable-extensions".into(), "envoy.load_balancing_policies/envoy.load_balancing_policies.maglev".into()],
        ..Default::default()
    });
    stack.wait_ready();
    assert_eq!(stack.get_as_admin("/api/v1/venues/1").1["service"], "venue");

    let seats = stack.start_echo("seats");
    let good = stack.registry();
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&good).unwrap();
    doc["services"][0]["traffic"] = serde_yaml::from_str("{ load_balancing: { policy: maglev, hash_header: x-user-id } }").unwrap();
    let seats_yaml = format!("{{ name: seats, routes: [{{ prefix: /api/v1/seats }}], instances: [{{ address: 127.0.0.1, port: {seats} }}] }}");
    doc["services"].as_sequence_mut().unwrap().push(serde_yaml::from_str(&seats_yaml).unwrap());
    stack.write_registry(&serde_yaml::to_string(&doc).unwrap());
    let nacked = time_until(Duration::from_secs(10), || stack.control_plane_status()["last_nack"]["type"] == "CDS");
    let status = stack.control_plane_status();
    assert!(nacked.is_some(), "Envoy NACKs the maglev cluster: {status}");
    eprintln!("CDS NACKed after {nacked:?}: {}", status["last_nack"]["detail"]);

    // The rest of the edit goes on: seats is routed once its cluster is ACKed, venue keeps
    // its last good cluster.
    let routed = time_until(Duration::from_secs(5), || stack.get_as_admin("/api/v1/seats/1").1["service"] == "seats");
    assert!(routed.is_some(), "the new service is routed while venue is quarantined: {}", stack.control_plane_status());
    eprintln!("seats routed {routed:?} after the edit, venue quarantined");
    assert_eq!(stack.get_as_admin("/api/v1/venues/1").1["service"], "venue", "the last good config keeps serving");
    let rejected = &stack.control_plane_status()["envoys"][0]["types"]["CDS"]["rejected"];
    assert!(rejected["detail"].as_str().unwrap_or_default().contains("svc_venue"), "still NACKED: {rejected}");

    // The cluster fixed in the registry: it goes again, and its ACK ends the quarantine.
    doc["services"][0].as_mapping_mut().unwrap().remove("traffic");
    stack.write_registry(&serde_yaml::to_string(&doc).unwrap());
    let cleared = time_until(Duration::from_secs(5), || stack.control_plane_status()["envoys"][0]["types"]["CDS"]["rejected"].is_null());
    assert!(cleared.is_some(), "the fix is ACKed: {}", stack.control_plane_status());
    assert_eq!(stack.get_as_admin("/api/v1/venues/1").1["service"], "venue");
    assert_eq!(stack.get_as_admin("/api/v1/seats/1").1["service"], "seats");
}
