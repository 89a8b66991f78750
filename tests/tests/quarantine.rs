#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Quarantine of a NACKed resource, per node, end to end, over SotW and delta: two real
//! Envoys, one (A) started without the maglev load balancer. A refuses venue's maglev
//! cluster; then an edit of another service (plain: a new cluster policy and a new route)
//! reaches A, proven by requests A answers on the new route, while venue stays quarantined
//! on A, served by its last good cluster, and shown NACKED with Envoy's message and the
//! registry entry (status, --wait-synced, CSDS, services[].rejected). B is SYNCED
//! throughout. An edit of venue that A accepts ends the quarantine.

use std::time::Duration;

use envoy_types::pb::envoy::admin::v3::ClientResourceStatus;
use envoy_types::pb::envoy::service::status::v3::ConfigStatus;
use serde_json::Value;
use stagedoor_e2e::fixtures::venue_and_plain_yaml;
use stagedoor_e2e::stack::time_until;
use stagedoor_e2e::status_cli::{csds, csds_cluster, envoy, status, status_json, text};
use stagedoor_e2e::{Stack, StackOptions};

/// Requests sent to count what one Envoy answered: both Envoys listen on the gateway port
/// (SO_REUSEPORT), and each request is a new connection, so A gets some of them (all 40 on
/// B has a chance of 2^-40).
const REQUESTS: usize = 40;

fn edited(stack: &Stack, service: usize, edit: impl FnOnce(&mut serde_yaml::Value)) -> String {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&stack.registry()).unwrap();
    edit(&mut doc["services"][service]);
    serde_yaml::to_string(&doc).unwrap()
}

/// The load-balancing policy of `cluster` in an Envoy's /config_dump (ROUND_ROBIN when unset).
fn lb_policy(config_dump: &str, cluster: &str) -> Option<String> {
    let dump: Value = serde_json::from_str(config_dump).ok()?;
    let clusters = dump["configs"].as_array()?.iter().find(|c| c["@type"].as_str().is_some_and(|t| t.ends_with("ClustersConfigDump")))?;
    let found = clusters["dynamic_active_clusters"].as_array()?.iter().find(|c| c["cluster"]["name"] == cluster)?;
    Some(found["cluster"]["lb_policy"].as_str().unwrap_or("ROUND_ROBIN").to_owned())
}

/// Requests one Envoy's filter authenticated (`wasmcustom.stagedoor_authn_ok`; its
/// service clusters' own counters are left out by the bootstrap's stats matcher).
fn authenticated(stack: &Stack, envoy: usize) -> u64 {
    stack.envoy_stat(envoy, "wasmcustom.stagedoor_authn_ok").unwrap_or(0)
}

/// REQUESTS requests to `path`, each on its own connection: every one must be answered by
/// `service`'s upstream, and A must have answered some of them.
fn served_through_a(stack: &Stack, a: usize, path: &str, service: &str) {
    let before = authenticated(stack, a);
    for i in 0..REQUESTS {
        let (status, echo) = stack.get_as_admin(path);
        assert_eq!((status, echo["service"].as_str()), (200, Some(service)), "request {i} to {path}: {echo}");
    }
    // The filter's counters reach Envoy on its tick (at most 500 ms later).
    let counted = time_until(Duration::from_secs(3), || authenticated(stack, a) > before);
    let through_a = authenticated(stack, a) - before;
    eprintln!("{path}: {REQUESTS} requests answered by {service}, {through_a} of them through A");
    assert!(counted.is_some(), "A answered some of the requests to {path}");
}

fn cds(json: &Value, node: &str) -> Value {
    envoy(json, node)["types"]["CDS"].clone()
}

fn assert_synced(stack: &Stack, node: &str, when: &str) {
    let json = status_json(stack);
    assert_eq!(envoy(&json, node)["state"], "SYNCED", "B is SYNCED {when}: {json:#}");
}

fn refused_names(cds: &Value) -> Vec<String> {
    let rejected = &cds["rejected"];
    let resources = rejected["resources"].as_array().cloned().unwrap_or_default();
    let named: Vec<String> = resources.iter().filter(|r| r["named_in_detail"] == true).filter_map(|r| r["name"].as_str().map(str::to_owned)).collect();
    if named.is_empty() {
        resources.iter().filter_map(|r| r["name"].as_str().map(str::to_owned)).collect()
    } else {
        named
    }
}

fn quarantine_round(delta: bool) {
    let mut stack = Stack::start(StackOptions { registry_yaml: venue_and_plain_yaml(), delta, ..Default::default() });
    let b = stack.envoys[0].node_id.clone();
    let a_node = format!("{b}-no-maglev");
    stack.start_envoy_with_args(&a_node, &["--disable-extensions", "envoy.load_balancing_policies/envoy.load_balancing_policies.maglev"]);
    let a = 1;
    stack.wait_ready();
    let out = status(&stack, &["--wait-synced", "--timeout", "30s"]);
    assert!(out.status.success(), "both sync: {}{}", text(&out.stdout), text(&out.stderr));

    // venue gets maglev: A refuses its cluster, B takes it.
    stack.write_registry(&edited(&stack, 0, |venue| {
        venue["traffic"] = serde_yaml::from_str("{ load_balancing: { policy: maglev, hash_header: x-user-id } }").unwrap();
    }));
    // A's refusal settles: the rest of CDS went again and was ACKed, venue stays refused.
    let settled = time_until(Duration::from_secs(20), || {
        let json = status_json(&stack);
        let a_cds = cds(&json, &a_node);
        a_cds["state"] == "NACKED" && refused_names(&a_cds) == ["svc_venue"] && envoy(&json, &b)["state"] == "SYNCED"
    });
    let json = status_json(&stack);
    assert!(settled.is_some(), "A quarantines svc_venue, B syncs: {json:#}");
    let detail = cds(&json, &a_node)["rejected"]["detail"].as_str().unwrap_or_default().to_owned();
    eprintln!("A's NACK: {detail}");
    assert!(detail.contains("svc_venue"), "{json:#}");
    eprintln!("A's CDS after the NACK: {:#}", cds(&json, &a_node));
    assert_eq!(lb_policy(&stack.config_dump(a), "svc_venue").as_deref(), Some("ROUND_ROBIN"), "A keeps venue's last good cluster");
    assert_eq!(lb_policy(&stack.config_dump(0), "svc_venue").as_deref(), Some("MAGLEV"), "B runs the edit");

    // plain's edit (a cluster policy and a new route) reaches A although venue's refused
    // cluster is in the same type.
    let plain_edit = edited(&stack, 1, |plain| {
        plain["traffic"] = serde_yaml::from_str("{ load_balancing: { policy: least_request } }").unwrap();
        plain["routes"] = serde_yaml::from_str("[{ prefix: /api/v1/plain }, { prefix: /api/v2/plain }]").unwrap();
    });
    let routes_before = envoy(&json, &a_node)["types"]["RDS"]["acked_version"].clone();
    stack.write_registry(&plain_edit);
    let reached = time_until(Duration::from_secs(20), || {
        let json = status_json(&stack);
        let rds = |node: &str| envoy(&json, node)["types"]["RDS"].clone();
        rds(&a_node)["acked_version"] != routes_before
            && rds(&a_node)["acked_version"] == rds(&b)["acked_version"]
            && envoy(&json, &b)["state"] == "SYNCED"
            && cds(&json, &a_node)["state"] == "NACKED"
    });
    let json = status_json(&stack);
    eprintln!("plain's edit reached A after {reached:?}");
    assert!(reached.is_some(), "A ACKs plain's new routes: {json:#}");
    assert_eq!(lb_policy(&stack.config_dump(a), "svc_plain").as_deref(), Some("LEAST_REQUEST"), "A runs plain's new cluster");
    assert_eq!(lb_policy(&stack.config_dump(a), "svc_venue").as_deref(), Some("ROUND_ROBIN"), "and venue's last good one");
    served_through_a(&stack, a, "/api/v2/plain/1", "plain");
    served_through_a(&stack, a, "/api/v1/venues/1", "venue");

    // Status: venue still rejected on A only, with Envoy's message and the registry entry.
    let a_cds = cds(&json, &a_node);
    assert_eq!(a_cds["state"], "NACKED", "{json:#}");
    assert_eq!(refused_names(&a_cds), ["svc_venue"]);
    let venue = a_cds["rejected"]["resources"].as_array().unwrap().iter().find(|r| r["name"] == "svc_venue").unwrap().clone();
    assert_eq!((venue["service"].as_str(), venue["field"].as_str()), (Some("venue"), Some("traffic.load_balancing")), "{venue:#}");
    assert_eq!(a_cds["rejected"]["detail"], detail.as_str(), "the NACK in force is still Envoy's first message");
    assert!(cds(&json, &b)["rejected"].is_null(), "{json:#}");
    let out = status(&stack, &["--wait-synced", "--timeout", "30s"]);
    assert!(!out.status.success(), "a quarantined resource fails --wait-synced");
    assert!(text(&out.stderr).contains(a_node.as_str()), "{}", text(&out.stderr));
    let response = csds(&stack, Some("operator")).expect("CSDS answers the operator");
    let (config, client, _, details) = csds_cluster(&response, &a_node, "svc_venue");
    assert_eq!((config, client), (ConfigStatus::Error as i32, ClientResourceStatus::Nacked as i32));
    assert_eq!(details, detail);
    let (config, _, _, _) = csds_cluster(&response, &a_node, "svc_plain");
    assert_ne!(config, ConfigStatus::Error as i32, "plain is not rejected on A");
    assert_eq!(csds_cluster(&response, &b, "svc_venue").0, ConfigStatus::Synced as i32);
    let http_status = stack.control_plane_status();
    let marks = |name: &str| {
        let services = http_status["services"].as_array().cloned().unwrap_or_default();
        services.iter().find(|s| s["name"] == name).map(|s| s["rejected"].clone()).unwrap_or(Value::Null)
    };
    let venue_marks = marks("venue");
    assert_eq!(venue_marks.as_array().map(Vec::len), Some(1), "{venue_marks:#}");
    assert_eq!(venue_marks[0]["node_id"], a_node.as_str());
    assert_eq!(marks("plain"), serde_json::json!([]));
    let log = stack.control_plane_log();
    let nacks = log.lines().filter(|l| l.contains("NACK") && l.contains(a_node.as_str()) && l.contains("CDS")).count();
    assert_eq!(nacks, 1, "venue's cluster was not sent to A again: one NACK in the log");

    // venue's next edit is one A accepts: the quarantine ends.
    let venue_fixed = edited(&stack, 0, |venue| {
        venue["traffic"] = serde_yaml::from_str("{ load_balancing: { policy: least_request } }").unwrap();
    });
    let nacked_snapshot = json["snapshot_version"].clone();
    stack.write_registry(&venue_fixed);
    let read = time_until(Duration::from_secs(10), || status_json(&stack)["snapshot_version"] != nacked_snapshot);
    assert!(read.is_some(), "the control plane publishes venue's fix");
    let out = status(&stack, &["--wait-synced", "--timeout", "30s"]);
    assert!(out.status.success(), "synced after venue's fix: {}{}", text(&out.stdout), text(&out.stderr));
    let json = status_json(&stack);
    let a_cds = cds(&json, &a_node);
    assert_eq!(a_cds["state"], "SYNCED", "{json:#}");
    assert!(a_cds["rejected"].is_null(), "{json:#}");
    assert_eq!(a_cds["acked_version"], cds(&json, &b)["acked_version"], "A runs what the registry says again");
    assert_eq!(lb_policy(&stack.config_dump(a), "svc_venue").as_deref(), Some("LEAST_REQUEST"));
    assert_synced(&stack, &b, "after venue's fix");
}

#[test]
fn sotw_a_refused_cluster_is_quarantined_on_its_node_while_other_edits_reach_it() {
    quarantine_round(false);
}

#[test]
fn delta_a_refused_cluster_is_quarantined_on_its_node_while_other_edits_reach_it() {
    quarantine_round(true);
}
