#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The convergence ledger over incremental (delta) ADS: two delta Envoys, one started
//! without the maglev load balancer, so an edit giving one service maglev is NACKed by that
//! one only. The NACK is per resource (the delta response carried exactly the changed
//! cluster), shown NACKED with Envoy's message and the service and field in `stagedoor
//! status` and in CSDS, on that node only; the next valid edit clears it.

use std::time::Duration;

use envoy_types::pb::envoy::admin::v3::ClientResourceStatus;
use envoy_types::pb::envoy::service::status::v3::ConfigStatus;
use stagedoor_e2e::fixtures::venue_and_plain_yaml;
use stagedoor_e2e::stack::time_until;
use stagedoor_e2e::status_cli::{csds, csds_cluster, envoy, status, status_json, text};
use stagedoor_e2e::{Stack, StackOptions};

#[test]
fn a_delta_envoy_nacking_one_cluster_shows_it_nacked_per_resource_on_that_node_only_until_the_next_valid_edit() {
    let mut stack = Stack::start(StackOptions { registry_yaml: venue_and_plain_yaml(), delta: true, ..Default::default() });
    let good = stack.envoys[0].node_id.clone();
    let bad = format!("{good}-no-maglev");
    stack.start_envoy_with_args(&bad, &["--disable-extensions", "envoy.load_balancing_policies/envoy.load_balancing_policies.maglev"]);
    stack.wait_ready();
    let out = status(&stack, &["--wait-synced", "--timeout", "30s"]);
    assert!(out.status.success(), "both delta Envoys sync: {}{}", text(&out.stdout), text(&out.stderr));
    let json = status_json(&stack);
    assert_eq!((envoy(&json, &good)["protocol"].as_str(), envoy(&json, &bad)["protocol"].as_str()), (Some("delta"), Some("delta")), "{json:#}");

    let original = stack.registry();
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&original).unwrap();
    doc["services"][0]["traffic"] = serde_yaml::from_str("{ load_balancing: { policy: maglev, hash_header: x-user-id } }").unwrap();
    stack.write_registry(&serde_yaml::to_string(&doc).unwrap());
    let nacked = time_until(Duration::from_secs(15), || envoy(&status_json(&stack), &bad)["types"]["CDS"]["state"] == "NACKED");
    assert!(nacked.is_some(), "the delta Envoy without maglev NACKs: {:#}", status_json(&stack));
    // Not the 15 s of Envoy's initial fetch timeout: the changed cluster's endpoints follow it.
    let synced = time_until(Duration::from_secs(10), || envoy(&status_json(&stack), &good)["state"] == "SYNCED");
    eprintln!("the maglev edit: the good delta Envoy SYNCED after {synced:?}");
    let json = status_json(&stack);
    assert!(synced.is_some(), "the other delta Envoy accepts: {json:#}");

    let rejected = &envoy(&json, &bad)["types"]["CDS"]["rejected"];
    eprintln!("delta NACK: {rejected:#}");
    let detail = rejected["detail"].as_str().unwrap_or_default().to_owned();
    assert!(detail.contains("svc_venue"), "Envoy's own message: {rejected:#}");
    let resources = rejected["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 1, "delta: the response carried the changed cluster only, so only it is rejected: {rejected:#}");
    assert_eq!((resources[0]["name"].as_str(), resources[0]["service"].as_str()), (Some("svc_venue"), Some("venue")));
    assert_eq!(resources[0]["field"], "traffic.load_balancing");
    assert!(envoy(&json, &good)["types"]["CDS"]["rejected"].is_null(), "{json:#}");

    let table = text(&status(&stack, &[]).stdout);
    eprintln!("{table}");
    let bad_row = table.lines().find(|l| l.starts_with(bad.as_str())).unwrap();
    let good_row = table.lines().find(|l| l.starts_with(good.as_str()) && !l.starts_with(bad.as_str())).unwrap();
    assert!(bad_row.contains("NACKED") && bad_row.contains("svc_venue (service venue, traffic.load_balancing)"), "{bad_row}");
    assert!(!good_row.contains("NACKED"), "{good_row}");

    let response = csds(&stack, Some("operator")).expect("CSDS answers the operator");
    let (config, client, ..) = csds_cluster(&response, &bad, "svc_venue");
    assert_eq!((config, client), (ConfigStatus::Error as i32, ClientResourceStatus::Nacked as i32));
    let (config, client, ..) = csds_cluster(&response, &good, "svc_venue");
    assert_eq!((config, client), (ConfigStatus::Synced as i32, ClientResourceStatus::Acked as i32));

    let nacked_snapshot = json["snapshot_version"].clone();
    stack.write_registry(&original);
    let read = time_until(Duration::from_secs(10), || status_json(&stack)["snapshot_version"] != nacked_snapshot);
    assert!(read.is_some(), "the control plane publishes the fix");
    let out = status(&stack, &["--wait-synced", "--timeout", "30s"]);
    assert!(out.status.success(), "synced after the fix: {}{}", text(&out.stdout), text(&out.stderr));
    let json = status_json(&stack);
    let cds = &envoy(&json, &bad)["types"]["CDS"];
    assert_eq!(cds["state"], "SYNCED", "{json:#}");
    assert!(cds["rejected"].is_null(), "a later ACK clears the rejection: {json:#}");
    assert_eq!(cds["last_nack"]["detail"], detail.as_str(), "the last NACK stays on record");
    assert_eq!(csds_cluster(&csds(&stack, Some("operator")).expect("CSDS answers"), &bad, "svc_venue").0, ConfigStatus::Synced as i32);
}
