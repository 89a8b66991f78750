#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! RBAC shadow mode through a real Envoy (issue 15): a rule marked `shadow` lets every
//! request through by the enforced policy, and counts, per rule, the requests it would
//! refuse: in the filter's metric, and summed by the control plane (/status and
//! `stagedoor status`) from the reports filters send on their tick.

use std::time::Duration;

use serde_json::json;
use stagedoor_e2e::fixtures::{auth_yaml, bearer};
use stagedoor_e2e::raw;
use stagedoor_e2e::stack::wait_for;
use stagedoor_e2e::{Stack, StackOptions};

/// The venue service with its reports rule in shadow and an enforced rule beside it.
fn registry() -> String {
    format!(
        "{}services:
  - name: venue
    routes: [{{ prefix: /api/v1/venues }}]
    instances: [{{ address: 127.0.0.1, port: 1 }}]
    rules:
      - {{ method: GET, path: '/api/v1/venues/{{venueId}}/reports', permission: 'reports:view', name: reports, shadow: true }}
      - {{ method: POST, path: '/api/v1/venues/{{venueId}}/events', permission: 'events:create' }}
",
        auth_yaml()
    )
}

const DENIED_STAT: &str = "wasmcustom.stagedoor_rbac_shadow_denied.venue.reports";

fn get(stack: &Stack, path: &str, role: &str, jti: &str) -> u16 {
    let auth = format!("Authorization: {}", bearer(json!({"role": role, "jti": jti})));
    raw::request(stack.gateway_port, "GET", path, &[&auth], "").status
}

#[test]
fn a_shadow_rule_lets_requests_through_and_counts_where_it_would_deny() {
    let stack = Stack::start(StackOptions { registry_yaml: registry(), ..Default::default() });
    stack.wait_ready();

    // Allowed by the shadow rule too: through, and not counted.
    for i in 0..3 {
        assert_eq!(get(&stack, "/api/v1/venues/v1/reports", "venue-manager", &format!("m{i}")), 200);
    }
    // Door staff lack reports:view: the shadow rule would refuse them; the enforced policy
    // (no enforced rule covers the route) lets them through.
    for i in 0..4 {
        assert_eq!(get(&stack, "/api/v1/venues/v1/reports", "door-staff", &format!("d{i}")), 200, "shadow never refuses");
    }
    // Another route: no shadow rule covers it, nothing is counted.
    assert_eq!(get(&stack, "/api/v1/venues/v1", "door-staff", "other"), 200);
    // The enforced rule still refuses.
    let auth = format!("Authorization: {}", bearer(json!({"role": "door-staff", "jti": "post"})));
    assert_eq!(raw::request(stack.gateway_port, "POST", "/api/v1/venues/v1/events", &[&auth], "{}").status, 403);

    // The filter's counter (flushed on its tick): exactly the four door-staff requests.
    assert!(wait_for(Duration::from_secs(5), || stack.envoy_stat(0, DENIED_STAT) == Some(4)), "{:?}", stack.envoy_stat(0, DENIED_STAT));
    assert_eq!(stack.envoy_stat(0, "wasmcustom.stagedoor_rbac_shadow_allowed.venue.reports"), None, "never defined: nothing to count");

    // The control plane's sum of the reports, in /status and in `stagedoor status`.
    let reported = || stack.control_plane_status()["rbac_shadow"]["venue.reports"].clone();
    assert!(wait_for(Duration::from_secs(10), || reported()["denied"] == 4), "{}", stack.control_plane_status()["rbac_shadow"]);
    assert_eq!(reported(), json!({"denied": 4, "allowed": 0}));
    let out = stack.cli().arg("status").output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(printed.contains("- venue.reports: would deny 4, would allow 0"), "{printed}");
}

/// A role's coming permissions (`shadow_permissions`): counted both ways under `role.<role>`,
/// while the permissions in force decide.
#[test]
fn a_roles_shadow_permissions_are_counted_where_they_would_decide_otherwise() {
    let registry = format!(
        "{}roles:
  venue-manager: {{ permissions: ['events:create', 'reports:view'], venue_scoped: true, shadow_permissions: ['reports:view'] }}
  door-staff: {{ permissions: ['tickets:view'], venue_scoped: true, shadow_permissions: ['tickets:view', 'events:create'] }}
services:
  - name: venue
    routes: [{{ prefix: /api/v1/venues }}]
    instances: [{{ address: 127.0.0.1, port: 1 }}]
    rules:
      - {{ method: POST, path: '/api/v1/venues/{{venueId}}/events', permission: 'events:create' }}
",
        auth_yaml()
    );
    let stack = Stack::start(StackOptions { registry_yaml: registry, ..Default::default() });
    stack.wait_ready();
    let post = |role: &str, jti: &str| {
        let auth = format!("Authorization: {}", bearer(json!({"role": role, "jti": jti})));
        raw::request(stack.gateway_port, "POST", "/api/v1/venues/v1/events", &[&auth], "{}").status
    };
    assert_eq!(post("venue-manager", "m1"), 200, "still holds events:create");
    assert_eq!(post("venue-manager", "m2"), 200);
    assert_eq!(post("door-staff", "d1"), 403, "does not hold it yet");
    let counts = || stack.control_plane_status()["rbac_shadow"].clone();
    let expected = json!({"role.venue-manager": {"denied": 2, "allowed": 0}, "role.door-staff": {"denied": 0, "allowed": 1}});
    assert!(wait_for(Duration::from_secs(10), || counts() == expected), "{}", counts());
    assert_eq!(stack.envoy_stat(0, "wasmcustom.stagedoor_rbac_shadow_allowed.role.door-staff"), Some(1));
    assert_eq!(stack.envoy_stat(0, "wasmcustom.stagedoor_rbac_shadow_denied.role.venue-manager"), Some(2));
}
