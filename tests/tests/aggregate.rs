#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Composite routes (issue 14) through a real Envoy: the filter calls every source at once
//! through its service's cluster with the identity it verified, and composes the answers.
//! The echo upstreams take their status and delay from the query the source path sends.

use std::time::{Duration, Instant};

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
  - name: event
    routes: [{ prefix: /api/v1/events }]
    instances: [{ address: 127.0.0.1, port: 1 }]
  - name: ticket
    routes: [{ prefix: /api/v1/tickets }]
    instances: [{ address: 127.0.0.1, port: 1 }]
composites:
  # One required and one optional source whose status and delay the request's path picks.
  - name: probe
    path: "/api/v1/aggregate/probe/{rs}/{rd}/{os}/{od}"
    deadline_ms: 1500
    sources:
      - name: req
        service: venue
        path: "/api/v1/venues/probe?x-echo-status={rs}&x-echo-delay-ms={rd}"
        required: true
        timeout_ms: 800
      - name: opt
        service: event
        path: "/api/v1/events/probe?x-echo-status={os}&x-echo-delay-ms={od}"
        timeout_ms: 800
        fallback: { enabled: false }
  - name: parallel
    path: /api/v1/aggregate/parallel
    deadline_ms: 2000
    sources:
      - { name: a, service: venue, path: "/api/v1/venues/a?x-echo-delay-ms=300", required: true }
      - { name: b, service: event, path: "/api/v1/events/b?x-echo-delay-ms=300", required: true }
      - { name: c, service: ticket, path: "/api/v1/tickets/c?x-echo-delay-ms=300" }
  - name: dashboard
    path: "/api/v1/aggregate/users/{userId}/dashboard"
    permission: tickets:view
    deadline_ms: 1000
    sources:
      - { name: profile, service: venue, path: "/api/v1/venues/users/{userId}", required: true }
      - { name: tickets, service: ticket, path: "/api/v1/tickets/users/{userId}", required: true }
"#
}

fn get(stack: &Stack, path: &str, headers: &[&str]) -> RawResponse {
    raw::request(stack.gateway_port, "GET", path, headers, "")
}

fn as_user(stack: &Stack, path: &str) -> RawResponse {
    let auth = format!("Authorization: {}", bearer(json!({})));
    get(stack, path, &[&auth])
}

#[derive(Clone, Copy, Debug)]
enum Behaviour {
    Succeeds,
    Fails,
    TimesOut,
}

impl Behaviour {
    /// (status, delay) the echo is asked for; the delay of a timeout is past the source's 800 ms.
    fn params(self) -> (u16, u64) {
        match self {
            Behaviour::Succeeds => (200, 0),
            Behaviour::Fails => (500, 0),
            Behaviour::TimesOut => (200, 1200),
        }
    }
}

#[test]
fn every_combination_of_required_and_optional_success_failure_and_timeout() {
    let stack = Stack::start(StackOptions { registry_yaml: registry(), ..Default::default() });
    stack.wait_ready();
    use Behaviour::*;
    for required in [Succeeds, Fails, TimesOut] {
        for optional in [Succeeds, Fails, TimesOut] {
            let ((rs, rd), (os, od)) = (required.params(), optional.params());
            let started = Instant::now();
            let response = as_user(&stack, &format!("/api/v1/aggregate/probe/{rs}/{rd}/{os}/{od}"));
            let took = started.elapsed();
            let body = response.json();
            let case = format!("required {required:?}, optional {optional:?} ({} ms): {body}", took.as_millis());
            eprintln!("{case}");
            match required {
                Fails => {
                    assert_eq!(response.status, 502, "{case}");
                    assert_eq!(body["code"], "SOURCE_FAILED", "{case}");
                    assert!(body["message"].as_str().unwrap().contains("req"), "{case}");
                    assert_eq!(response.header("x-stagedoor-completed"), Some("false"), "{case}");
                    continue;
                }
                TimesOut => {
                    assert_eq!(response.status, 504, "{case}");
                    assert_eq!(body["code"], "SOURCE_TIMEOUT", "{case}");
                    assert!(body["message"].as_str().unwrap().contains("req"), "{case}");
                    assert!(took < Duration::from_millis(1200), "answered at the source's timeout, not the echo's delay: {case}");
                    continue;
                }
                Succeeds => {}
            }
            assert_eq!(response.status, 200, "{case}");
            assert_eq!(body["req"]["service"], "venue", "{case}");
            let sources = &body["_metadata"]["sources"];
            assert_eq!(sources[0]["name"], "req");
            assert_eq!((sources[0]["ok"].clone(), sources[0]["status"].clone()), (json!(true), json!(200)), "{case}");
            let opt = &sources[1];
            assert_eq!((opt["name"].clone(), opt["required"].clone()), (json!("opt"), json!(false)));
            match optional {
                Succeeds => {
                    assert_eq!(body["opt"]["service"], "event", "{case}");
                    assert_eq!((opt["ok"].clone(), opt["fallback"].clone()), (json!(true), json!(false)), "{case}");
                    assert_eq!(response.header("x-stagedoor-completed"), Some("true"), "{case}");
                    assert_eq!(body["_metadata"]["completed"], json!(true));
                }
                Fails | TimesOut => {
                    assert_eq!(body["opt"], json!({"enabled": false}), "the fallback stands in: {case}");
                    assert_eq!((opt["ok"].clone(), opt["fallback"].clone()), (json!(false), json!(true)), "{case}");
                    let (status, error) = if matches!(optional, Fails) { (json!(500), "status") } else { (Value::Null, "timeout") };
                    assert_eq!((opt["status"].clone(), opt["error"].as_str()), (status, Some(error)), "{case}");
                    assert_eq!(response.header("x-stagedoor-completed"), Some("false"), "{case}");
                    assert_eq!(body["_metadata"]["completed"], json!(false));
                }
            }
        }
    }
}

#[test]
fn sources_run_in_parallel_and_each_gets_the_verified_identity_only() {
    let stack = Stack::start(StackOptions { registry_yaml: registry(), ..Default::default() });
    stack.wait_ready();
    let auth = format!("Authorization: {}", bearer(json!({"tenant_id": "t1", "sub": "u1"})));
    let spoofed = ["X-Tenant-Id: evil", "X-User-Id: mallory", "X-User-Role: admin", "X-Stagedoor-Identity: forged", "X-Evil: 1"];
    let mut headers = vec![auth.as_str(), "X-Request-Id: agg-req-1"];
    headers.extend(spoofed);
    // Warm the connections to the echoes first: a cold connect is not what is measured.
    get(&stack, "/api/v1/aggregate/parallel", &headers);
    let mut slowest_total = Duration::ZERO;
    for _ in 0..3 {
        let started = Instant::now();
        let response = get(&stack, "/api/v1/aggregate/parallel", &headers);
        let took = started.elapsed();
        slowest_total = slowest_total.max(took);
        assert_eq!(response.status, 200, "{}", response.body);
        let body = response.json();
        eprintln!("three sources of 300 ms each: answered in {} ms", took.as_millis());
        assert!(took >= Duration::from_millis(300), "{took:?}");
        for key in ["a", "b", "c"] {
            let seen = &body[key]["headers"];
            assert_eq!(seen["x-tenant-id"], json!(["t1"]), "{key}: {seen}");
            assert_eq!(seen["x-user-id"], json!(["u1"]), "{key}: {seen}");
            assert_eq!(seen["x-user-role"], json!(["venue-manager"]), "{key}: {seen}");
            // The request's id (Envoy's, as it does not trust a client's) reaches every source.
            assert_eq!(seen["x-request-id"], body["a"]["headers"]["x-request-id"], "{key}: {seen}");
            assert_eq!(seen["x-request-id"].as_array().map(Vec::len), Some(1), "{key}: {seen}");
            assert_eq!(seen["x-stagedoor-identity"].as_array().map(Vec::len), Some(1), "{key}: {seen}");
            assert_ne!(seen["x-stagedoor-identity"], json!(["forged"]), "{key}: {seen}");
            assert!(seen.get("x-evil").is_none() && seen.get("authorization").is_none(), "no client header: {key}: {seen}");
        }
    }
    assert!(slowest_total < Duration::from_millis(800), "about the slowest source, not the sum (900 ms): {slowest_total:?}");
}

#[test]
fn the_composite_route_is_authenticated_and_authorized_like_any_other() {
    let stack = Stack::start(StackOptions { registry_yaml: registry(), ..Default::default() });
    stack.wait_ready();
    let response = get(&stack, "/api/v1/aggregate/users/u1/dashboard", &[]);
    assert_eq!((response.status, response.json()["code"].as_str()), (401, Some("TOKEN_MISSING")), "{}", response.body);

    // A customer holds tickets:view-own: their own dashboard, not another's.
    let customer = format!("Authorization: {}", bearer(json!({"role": "customer", "sub": "u1"})));
    let own = get(&stack, "/api/v1/aggregate/users/u1/dashboard", &[&customer]);
    assert_eq!(own.status, 200, "{}", own.body);
    let body = own.json();
    assert_eq!(body["profile"]["path"], "/api/v1/venues/users/u1");
    assert_eq!(body["tickets"]["path"], "/api/v1/tickets/users/u1");
    let other = get(&stack, "/api/v1/aggregate/users/u2/dashboard", &[&customer]);
    assert_eq!((other.status, other.json()["code"].as_str()), (403, Some("INSUFFICIENT_PERMISSIONS")), "{}", other.body);
}
