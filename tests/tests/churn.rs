#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Config churn never drops a request: continuous traffic while services are added,
//! removed and changed gets no 5xx from a missing cluster or route.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stagedoor_e2e::fixtures::{bearer, registry_with};
use stagedoor_e2e::raw;
use stagedoor_e2e::stack::time_until;
use stagedoor_e2e::{Stack, StackOptions};

fn registry() -> String {
    registry_with(
        r#"  - name: event
    routes: [{ prefix: /api/v1/events }]
    instances: [{ address: 127.0.0.1, port: 1 }]
"#,
    )
}

/// Sends requests to `path` until `stop`, at most 20 s; returns every status seen.
fn hammer(port: u16, path: &'static str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<u16>> {
    std::thread::spawn(move || {
        let auth = format!("Authorization: {}", bearer(json!({"role": "admin"})));
        let started = Instant::now();
        let mut statuses = Vec::new();
        while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(20) {
            statuses.push(raw::request(port, "GET", path, &[&auth], "").status);
        }
        statuses
    })
}

#[test]
fn services_added_removed_and_changed_under_load_cause_no_5xx() {
    churn(false);
}

#[test]
fn the_same_holds_over_delta_xds() {
    churn(true);
}

fn churn(delta: bool) {
    let mut stack = Stack::start(StackOptions { registry_yaml: registry(), delta, ..Default::default() });
    stack.wait_ready();
    let extra_port = stack.start_echo("extra");
    let base = stack.registry();
    let with_extra = |prefix: &str| {
        let mut doc: serde_yaml::Value = serde_yaml::from_str(&base).unwrap();
        let svc: serde_yaml::Value = serde_yaml::from_str(&format!(
            "{{ name: extra, routes: [{{ prefix: {prefix} }}], instances: [{{ address: 127.0.0.1, port: {extra_port} }}] }}"
        ))
        .unwrap();
        doc["services"].as_sequence_mut().unwrap().push(svc);
        serde_yaml::to_string(&doc).unwrap()
    };

    let stop = Arc::new(AtomicBool::new(false));
    let steady = hammer(stack.gateway_port, "/api/v1/venues/1", stop.clone());
    let churned = hammer(stack.gateway_port, "/api/v1/extra/1", stop.clone());
    for round in 0..6 {
        stack.write_registry(&with_extra("/api/v1/extra"));
        std::thread::sleep(Duration::from_millis(400));
        stack.write_registry(&with_extra(&format!("/api/v1/extra-{round}")));
        std::thread::sleep(Duration::from_millis(400));
        stack.write_registry(&base);
        std::thread::sleep(Duration::from_millis(400));
    }
    stop.store(true, Ordering::Relaxed);
    let steady = steady.join().unwrap();
    let churned = churned.join().unwrap();
    eprintln!("steady: {} requests, churned: {} requests", steady.len(), churned.len());
    assert!(steady.len() > 50 && churned.len() > 50, "enough traffic to mean something");
    assert!(steady.iter().all(|s| *s == 200), "a service nobody touched kept answering: {:?}", count(&steady));
    assert!(
        churned.iter().all(|s| *s == 200 || *s == 404),
        "a service coming and going is 200 or 404, never 5xx: {:?}",
        count(&churned)
    );
    assert!(churned.contains(&200) && churned.contains(&404), "it really came and went: {:?}", count(&churned));
    // The retired cluster is dropped after its routes.
    let gone = time_until(Duration::from_secs(10), || !stack.config_dump(0).contains("svc_extra"));
    assert!(gone.is_some(), "a removed service's cluster leaves once nothing routes to it");
}

fn count(statuses: &[u16]) -> std::collections::BTreeMap<u16, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for s in statuses {
        *counts.entry(*s).or_insert(0) += 1;
    }
    counts
}

/// Registry edits that change only the filter's policy (a public path here) reach Envoy
/// as a new filter config (ECDS): the listener is never replaced, so nothing drains and no
/// socket or filter chain piles up, and each edit's policy is enforced.
#[test]
fn policy_edits_keep_one_listener_and_drain_nothing() {
    policy_edits(false);
}

#[test]
fn policy_edits_over_delta_xds_keep_one_listener_too() {
    policy_edits(true);
}

fn policy_edits(delta: bool) {
    let stack = Stack::start(StackOptions { registry_yaml: registry(), delta, ..Default::default() });
    stack.wait_ready();
    let base = stack.registry();
    let lds_version = stack.control_plane_status()["type_versions"]["LDS"].clone();
    let modified_before = stack.envoy_stat(0, "listener_manager.listener_modified").unwrap();
    let open = |i: usize| format!("/api/v1/venues/open-{i}");
    let status = |path: &str| raw::request(stack.gateway_port, "GET", path, &[], "").status;
    const EDITS: usize = 20;
    let started = Instant::now();
    for i in 0..EDITS {
        stack.write_registry(&with_public_path(&base, "venue", &open(i)));
        let took = time_until(Duration::from_secs(5), || status(&open(i)) == 200);
        assert!(took.is_some(), "edit {i}: the new public path is served without a token");
        if i > 0 {
            assert_eq!(status(&open(i - 1)), 401, "edit {i}: the previous public path needs a token again");
        }
    }
    eprintln!("{EDITS} policy edits, each enforced, in {:?}", started.elapsed());
    assert_eq!(stack.control_plane_status()["type_versions"]["LDS"], lds_version, "no Listener resource changed");
    let modified = stack.envoy_stat(0, "listener_manager.listener_modified").unwrap();
    let draining = stack.envoy_stat(0, "listener_manager.total_filter_chains_draining").unwrap();
    let listeners: serde_json::Value = serde_json::from_str(&stack.envoy_admin(0, "/listeners?format=json")).unwrap();
    let vms = stack.envoy_stat(0, "wasm.envoy.wasm.runtime.v8.active");
    let created = stack.envoy_stat(0, "wasm.envoy.wasm.runtime.v8.created");
    eprintln!("listener_modified {modified_before} -> {modified}, draining chains {draining}, wasm VMs active {vms:?} created {created:?}");
    assert_eq!(modified, modified_before, "Envoy never replaced the listener");
    assert_eq!(draining, 0, "no filter chain is draining");
    assert_eq!(listeners["listener_statuses"].as_array().map(Vec::len), Some(1), "{listeners}");

    // A listener change (a rate limit is a filter in the listener) still replaces it; the
    // old chain drains for the stack's --drain-time-s (1 s) and is gone.
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&stack.registry()).unwrap();
    doc["rate_limit"] = serde_yaml::from_str("{ requests: 1000, window_ms: 60000 }").unwrap();
    stack.write_registry(&serde_yaml::to_string(&doc).unwrap());
    let replaced = time_until(Duration::from_secs(5), || stack.envoy_stat(0, "listener_manager.listener_modified") == Some(modified + 1));
    assert!(replaced.is_some(), "the listener edit reaches Envoy");
    let drained = time_until(Duration::from_secs(10), || {
        stack.envoy_stat(0, "listener_manager.total_filter_chains_draining") == Some(0)
    });
    eprintln!("listener replaced after {replaced:?}, old chain drained {drained:?} later");
    assert!(drained.is_some(), "the drain is bounded");
}

/// `yaml` with `path` as the one public path of `service`: a policy-only edit.
fn with_public_path(yaml: &str, service: &str, path: &str) -> String {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    let svc = doc["services"].as_sequence_mut().unwrap().iter_mut().find(|s| s["name"] == service).unwrap();
    svc["public_paths"] = serde_yaml::Value::from(vec![path.to_owned()]);
    serde_yaml::to_string(&doc).unwrap()
}
