#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The convergence ledger end to end: two real Envoys, one started without the maglev
//! load balancer, so a registry edit that gives a service maglev is NACKed by that one only.
//! `stagedoor status` (table, --node, -o json, --wait-synced), /metrics and CSDS (a tonic
//! client of the standard envoy.service.status.v3 service) all tell the same story: NACKED
//! with Envoy's message and the service and field on that node, SYNCED on the other; the
//! next valid edit clears it.

use std::time::Duration;

use envoy_types::pb::envoy::admin::v3::ClientResourceStatus;
use envoy_types::pb::envoy::service::status::v3::ConfigStatus;
use stagedoor_e2e::fixtures::auth_yaml;
use stagedoor_e2e::stack::time_until;
use stagedoor_e2e::status_cli::{csds, csds_cluster, envoy, status, status_json, text};
use stagedoor_e2e::{Stack, StackOptions};

fn registry() -> String {
    auth_yaml()
        + r#"
services:
  - name: venue
    routes: [{ prefix: /api/v1/venues }]
    instances: [{ address: 127.0.0.1, port: 1 }]
"#
}

#[test]
fn one_envoy_nacking_an_edit_shows_nacked_with_its_message_and_the_registry_entry_on_that_node_only() {
    let mut stack = Stack::start(StackOptions { registry_yaml: registry(), ..Default::default() });
    let good = stack.envoys[0].node_id.clone();
    let bad = format!("{good}-no-maglev");
    stack.start_envoy_with_args(&bad, &["--disable-extensions", "envoy.load_balancing_policies/envoy.load_balancing_policies.maglev"]);
    stack.wait_ready();

    // Both converge: --wait-synced exits 0 and the table shows every type SYNCED.
    let out = status(&stack, &["--wait-synced", "--timeout", "30s"]);
    assert!(out.status.success(), "both Envoys sync: {}{}", text(&out.stdout), text(&out.stderr));
    let table = text(&out.stdout);
    eprintln!("{table}");
    for node in [&good, &bad] {
        let row = table.lines().find(|l| l.starts_with(node.as_str()) && !l.starts_with(&format!("{node}-"))).expect("a row per node");
        assert!(row.contains("SYNCED") && !row.contains("NACKED") && !row.contains("PENDING"), "{row}");
    }

    // The edit: maglev for venue. The Envoy without maglev refuses the cluster.
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&stack.registry()).unwrap();
    let original = stack.registry();
    doc["services"][0]["traffic"] = serde_yaml::from_str("{ load_balancing: { policy: maglev, hash_header: x-user-id } }").unwrap();
    stack.write_registry(&serde_yaml::to_string(&doc).unwrap());
    let nacked = time_until(Duration::from_secs(15), || envoy(&status_json(&stack), &bad)["types"]["CDS"]["state"] == "NACKED");
    let json = status_json(&stack);
    assert!(nacked.is_some(), "the Envoy without maglev NACKs: {json:#}");
    let synced = time_until(Duration::from_secs(10), || envoy(&status_json(&stack), &good)["state"] == "SYNCED");
    let json = status_json(&stack);
    assert!(synced.is_some(), "the other accepts: {json:#}");

    let rejected = &envoy(&json, &bad)["types"]["CDS"]["rejected"];
    let detail = rejected["detail"].as_str().unwrap_or_default().to_owned();
    eprintln!("NACK detail: {detail}");
    assert!(detail.contains("svc_venue"), "Envoy's own message, naming the cluster: {json:#}");
    assert!(stack.control_plane_log().contains(&detail), "the same words as the control plane logged from Envoy's error_detail");
    let resources = rejected["resources"].as_array().unwrap();
    assert!(
        resources.iter().any(|r| r["name"] == "svc_venue" && r["service"] == "venue" && r["field"] == "traffic.load_balancing"),
        "the rejected resource traced to its service and field: {rejected:#}"
    );
    assert_eq!(envoy(&json, &bad)["state"], "NACKED");
    for t in ["EDS", "LDS", "RDS", "ECDS"] {
        assert_eq!(envoy(&json, &bad)["types"][t]["state"], "SYNCED", "{t}: only CDS is refused: {json:#}");
    }
    let good_cds = &envoy(&json, &good)["types"]["CDS"];
    assert_eq!(good_cds["state"], "SYNCED");
    assert!(good_cds["rejected"].is_null(), "{json:#}");
    assert_eq!(good_cds["acked_version"], envoy(&json, &bad)["types"]["CDS"]["rejected"]["version"], "the good one runs what the bad one refused");
    assert_ne!(envoy(&json, &bad)["types"]["CDS"]["acked_version"], good_cds["acked_version"], "the bad one keeps its last good version");

    // The table: NACKED and the reason on that row only.
    let table = text(&status(&stack, &[]).stdout);
    eprintln!("{table}");
    let bad_row = table.lines().find(|l| l.starts_with(bad.as_str())).unwrap();
    let good_row = table.lines().find(|l| l.starts_with(good.as_str()) && !l.starts_with(bad.as_str())).unwrap();
    assert!(bad_row.contains("NACKED") && bad_row.contains("svc_venue (service venue, traffic.load_balancing)"), "{bad_row}");
    assert!(!good_row.contains("NACKED") && good_row.trim_end().ends_with('-'), "{good_row}");
    let detail_out = text(&status(&stack, &["--node", &bad]).stdout);
    assert!(detail_out.contains(&detail) && detail_out.contains("rejected: svc_venue (service venue, traffic.load_balancing)"), "{detail_out}");

    // --wait-synced fails at once on the NACK (nothing is re-sent until the registry changes).
    let out = status(&stack, &["--wait-synced", "--timeout", "30s"]);
    assert!(!out.status.success(), "a NACK fails the wait");
    assert!(text(&out.stderr).contains("NACKED") && text(&out.stderr).contains(bad.as_str()), "{}", text(&out.stderr));

    // Prometheus.
    let metrics = stagedoor_e2e::stack::client()
        .get(format!("http://127.0.0.1:{}/metrics", stack.metrics_port))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains(&format!("stagedoor_xds_nack_total{{node=\"{bad}\",type=\"CDS\"}} 1\n")), "{metrics}");
    assert!(!metrics.contains(&format!("stagedoor_xds_nack_total{{node=\"{good}\"")), "{metrics}");
    assert!(metrics.contains(&format!("stagedoor_xds_connected{{node=\"{good}\"}} 1\n")), "{metrics}");
    assert!(metrics.contains("stagedoor_xds_envoys{type=\"CDS\",state=\"NACKED\"} 1\n"), "{metrics}");
    assert!(metrics.contains("stagedoor_xds_envoys{type=\"CDS\",state=\"SYNCED\"} 1\n"), "{metrics}");
    assert!(metrics.contains("stagedoor_xds_push_ack_seconds_count{type=\"CDS\"}"), "{metrics}");

    // /status marks the service rejected, on that node only; /ui shows it, behind the same
    // authentication as /status.
    let http_status = stack.control_plane_status();
    let venue = http_status["services"].as_array().unwrap().iter().find(|s| s["name"] == "venue").unwrap().clone();
    let marks = venue["rejected"].as_array().unwrap();
    assert_eq!(marks.len(), 1, "{venue:#}");
    assert_eq!((marks[0]["node_id"].as_str(), marks[0]["field"].as_str()), (Some(bad.as_str()), Some("traffic.load_balancing")));
    let ui_url = format!("https://127.0.0.1:{}/ui", stack.http_port);
    let page = stagedoor_e2e::stack::operator_client(&stack.tls_dir).get(&ui_url).send().unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().unwrap();
    assert!(page.contains(&format!("<td>{bad}</td>")) && page.contains("<td class=\"NACKED\">NACKED</td>"), "{page}");
    assert!(page.contains("svc_venue (service venue, traffic.load_balancing)") && page.contains("No load balancer factory found"), "{page}");
    let anonymous = stagedoor_e2e::stack::https_client(&stack.tls_dir).get(&ui_url).send().unwrap();
    assert_eq!(anonymous.status(), 401, "the page needs the operator certificate or a read token");

    // CSDS, with a standard client: ERROR with Envoy's detail on one node, SYNCED on the other.
    let response = csds(&stack, Some("operator")).expect("CSDS answers the operator");
    let (config_status, client_status, _, details) = csds_cluster(&response, &bad, "svc_venue");
    assert_eq!((config_status, client_status), (ConfigStatus::Error as i32, ClientResourceStatus::Nacked as i32));
    assert_eq!(details, detail);
    let (config_status, client_status, version, _) = csds_cluster(&response, &good, "svc_venue");
    assert_eq!((config_status, client_status), (ConfigStatus::Synced as i32, ClientResourceStatus::Acked as i32));
    assert_eq!(version, good_cds["acked_version"].as_str().unwrap());
    let anonymous = csds(&stack, None).expect_err("CSDS needs the API's credentials");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated, "{anonymous}");

    // The next valid edit clears it on both (once the control plane has read the file).
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
    let response = csds(&stack, Some("operator")).unwrap();
    assert_eq!(csds_cluster(&response, &bad, "svc_venue").0, ConfigStatus::Synced as i32);
    let http_status = stack.control_plane_status();
    let venue = http_status["services"].as_array().unwrap().iter().find(|s| s["name"] == "venue").unwrap().clone();
    assert_eq!(venue["rejected"], serde_json::json!([]), "the mark is cleared by the ACK: {venue:#}");
    let history = envoy(&json, &bad)["history"].as_array().unwrap();
    assert!(history.iter().any(|p| p["type"] == "CDS" && p["outcome"] == "NACKED"), "{json:#}");
    assert_eq!(history.iter().rev().find(|p| p["type"] == "CDS").unwrap()["outcome"], "ACKED");
}

/// After a restart every Envoy reconnects at once: streams over the cap are refused with
/// UNAVAILABLE, Envoy retries with its backoff, and all of them converge.
#[test]
fn new_streams_over_the_cap_are_refused_and_every_envoy_still_converges() {
    let stack = Stack::start(StackOptions {
        registry_yaml: registry(),
        envoys: 3,
        serve_args: vec!["--max-new-xds-streams-per-second".into(), "1".into()],
        ..Default::default()
    });
    let all_synced = || {
        let json = status_json(&stack);
        let envoys = json["envoys"].as_array().cloned().unwrap_or_default();
        envoys.len() == 3 && envoys.iter().all(|e| e["connected"] == true && e["state"] == "SYNCED")
    };
    let took = time_until(Duration::from_secs(30), all_synced);
    assert!(took.is_some(), "three Envoys converge through a cap of one new stream a second: {:#}", status_json(&stack));
    let metrics = stagedoor_e2e::stack::client()
        .get(format!("http://127.0.0.1:{}/metrics", stack.metrics_port))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("stagedoor_xds_streams_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the refused-streams counter");
    eprintln!("3 Envoys synced after {took:?} with {refused} stream(s) refused");
    assert!(refused >= 1, "three Envoys starting together exceed one new stream a second: {metrics}");
}
