#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every form of a path a backend may serve as the same resource meets the rule written
//! for it, through a real Envoy, over HTTP/1.1 and HTTP/2: trailing slashes, dot segments,
//! HEAD for GET, case, `;params`, escapes, lower-case methods. A refused form never reaches
//! the upstream.

use serde_json::{json, Value};
use stagedoor_e2e::fixtures::{auth_yaml, bearer};
use stagedoor_e2e::raw::{self, RawResponse};
use stagedoor_e2e::{Stack, StackOptions};

fn registry() -> String {
    auth_yaml()
        + r#"
services:
  - name: venue
    routes: [{ prefix: /api/v1/venues }]
    instances: [{ address: 127.0.0.1, port: 1 }]
    rules:
      - { method: POST, path: "/api/v1/venues/{venueId}/events", permission: events:create }
      - { method: GET, path: "/api/v1/venues/{venueId}/reports", permission: reports:view }
    request_headers: { allow: ["x-echo-*"] }
  - name: event
    routes: [{ prefix: /api/v1/events }]
    instances: [{ address: 127.0.0.1, port: 1 }]
    rules:
      - { method: POST, path: /api/v1/events, permission: events:create }
    request_headers: { allow: ["x-echo-*"] }
  - name: ticket
    routes: [{ prefix: /api/v1/tickets }]
    instances: [{ address: 127.0.0.1, port: 1 }]
    rules:
      - { method: GET, path: "/api/v1/tickets/users/{userId}", permission: tickets:view }
    request_headers: { allow: ["x-echo-*"] }
  - name: payment
    routes: [{ prefix: /api/v1/payments }]
    instances: [{ address: 127.0.0.1, port: 1 }]
    unmatched: deny
    rules:
      - { method: POST, path: /api/v1/payments/process, permission: payments:process }
    request_headers: { allow: ["x-echo-*"] }
"#
}

fn send(stack: &Stack, method: &str, target: &str, claims: Value, key: &str) -> RawResponse {
    let auth = format!("Authorization: {}", bearer(claims));
    let key = format!("X-Echo-Key: {key}");
    raw::request(stack.gateway_port, method, target, &[&auth, &key], "")
}

fn customer() -> Value {
    json!({"role": "customer", "sub": "u1", "venues": null})
}

fn manager_of_v1() -> Value {
    json!({"role": "venue-manager", "sub": "m1", "venues": ["v1"]})
}

#[test]
fn no_form_of_a_protected_path_escapes_its_rule() {
    let stack = Stack::start(StackOptions { registry_yaml: registry(), ..Default::default() });
    stack.wait_ready();
    let mut refused = Vec::new();
    let cases: Vec<(&str, &str, Value, &str, &str)> = vec![
        ("POST", "/api/v1/events/", customer(), "event", "INSUFFICIENT_PERMISSIONS"),
        ("POST", "/api/v1/events/.", customer(), "event", "INSUFFICIENT_PERMISSIONS"),
        ("POST", "/api/v1/events//", customer(), "event", "INSUFFICIENT_PERMISSIONS"),
        ("POST", "/api/v1/venues/v1/EVENTS", customer(), "venue", "INSUFFICIENT_PERMISSIONS"),
        ("POST", "/api/v1/venues/v1/events;x=1", customer(), "venue", "INSUFFICIENT_PERMISSIONS"),
        ("POST", "/api/v1/venues/v1/%65vents", customer(), "venue", "INSUFFICIENT_PERMISSIONS"),
        ("HEAD", "/api/v1/venues/v2/reports", manager_of_v1(), "venue", "VENUE_ACCESS_DENIED"),
        ("GET", "/api/v1/venues/v2/reports/", manager_of_v1(), "venue", "VENUE_ACCESS_DENIED"),
        ("GET", "/api/v1/venues/v2/REPORTS", manager_of_v1(), "venue", "VENUE_ACCESS_DENIED"),
        ("GET", "/api/v1/venues/v2/reports;a=b", manager_of_v1(), "venue", "VENUE_ACCESS_DENIED"),
        ("GET", "/api/v1/venues/v2/reports%20", manager_of_v1(), "venue", "INVALID_PATH"),
        ("GET", "/api/v1/venues/v2/reports%3F", manager_of_v1(), "venue", "INVALID_PATH"),
        // Refused either way: as a dot segment, or (after Envoy's normalization) as venue "v1;x".
        ("GET", "/api/v1/venues/v1;x/reports/..;/reports", manager_of_v1(), "venue", "*"),
        ("HEAD", "/api/v1/tickets/users/u2", customer(), "ticket", "INSUFFICIENT_PERMISSIONS"),
        ("GET", "/api/v1/tickets/users/u2/", customer(), "ticket", "INSUFFICIENT_PERMISSIONS"),
        ("GET", "/api/v1/payments/history", customer(), "payment", "ROUTE_NOT_ALLOWED"),
    ];
    for (i, (method, target, claims, service, code)) in cases.into_iter().enumerate() {
        let key = format!("variant-{i}");
        let r = send(&stack, method, target, claims, &key);
        let got = if method == "HEAD" { String::new() } else { r.json()["code"].as_str().unwrap_or_default().to_owned() };
        let reached = stack.echo_count(service, &key);
        if !(r.status == 403 || r.status == 400) || (method != "HEAD" && code != "*" && got != code) || reached > 0 {
            refused.push(format!("{method} {target}: {} {got} (expected {code}), upstream saw it {reached} times", r.status));
        }
    }
    assert!(refused.is_empty(), "escaped their rule:\n{}", refused.join("\n"));
    // The plain forms a caller may use still work, trailing slash and HEAD included.
    for (method, target, claims) in [
        ("GET", "/api/v1/venues/v1/reports/", manager_of_v1()),
        ("HEAD", "/api/v1/venues/v1/reports", manager_of_v1()),
        ("GET", "/api/v1/tickets/users/u1/", customer()),
        ("POST", "/api/v1/venues/v1/Events", manager_of_v1()),
    ] {
        assert_eq!(send(&stack, method, target, claims, "ok").status, 200, "{method} {target}");
    }
}

#[test]
fn over_http2_a_lower_case_method_is_refused_before_any_upstream() {
    let stack = Stack::start(StackOptions { registry_yaml: registry(), ..Default::default() });
    stack.wait_ready();
    let h2 = reqwest::blocking::Client::builder().http2_prior_knowledge().no_proxy().build().unwrap();
    for method in ["post", "Post", "pOST"] {
        let r = h2
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), stack.url("/api/v1/events"))
            .header("authorization", bearer(customer()))
            .header("x-echo-key", "lower")
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{method}");
        assert_eq!(r.json::<Value>().unwrap()["code"], "INVALID_METHOD", "{method}");
    }
    // The same variants as over HTTP/1.1 hold over HTTP/2 too.
    let r = h2
        .post(stack.url("/api/v1/events/"))
        .header("authorization", bearer(customer()))
        .header("x-echo-key", "lower")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = h2
        .head(stack.url("/api/v1/venues/v2/reports"))
        .header("authorization", bearer(manager_of_v1()))
        .header("x-echo-key", "lower")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(stack.echo_count("event", "lower") + stack.echo_count("venue", "lower"), 0);
}
