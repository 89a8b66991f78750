#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Traffic policy through a real Envoy: retries that never repeat a payment, timeouts and
//! failures in the gateway's JSON shape, outlier ejection, CORS at the edge, raw webhooks.

use std::time::{Duration, Instant};

use serde_json::json;
use stagedoor_e2e::fixtures::{auth_yaml, bearer};
use stagedoor_e2e::raw;
use stagedoor_e2e::stack::{client, time_until};
use stagedoor_e2e::ports::free_port;
use stagedoor_e2e::{Stack, StackOptions};

fn registry(dead_port: u16) -> String {
    auth_yaml()
        + &r#"
cors:
  allowed_origins: [https://app.tickettoken.com]
  allow_credentials: true
webhooks:
  - { path: /webhooks/stripe, stripe_secret: whsec_e2e_test }
services:
  - name: venue
    routes: [{ prefix: /api/v1/venues }]
    instances: [{ address: 127.0.0.1, port: 1 }]
    request_headers: { allow: ["x-echo-*"] }
    traffic:
      timeout_ms: 400
      retries: { attempts: 3, base_interval_ms: 10, max_interval_ms: 50 }
  - name: payment
    routes:
      - { prefix: /api/v1/payments }
      - { prefix: /webhooks, upstream_prefix: /api/v1/webhooks }
    instances: [{ address: 127.0.0.1, port: 1 }]
    public_paths: ["/webhooks/*"]
    request_headers: { allow: ["x-echo-*", stripe-signature] }
    traffic:
      retries: { attempts: 3, base_interval_ms: 10, max_interval_ms: 50 }
  - name: ticket
    routes: [{ prefix: /api/v1/tickets }]
    instances: [{ address: 127.0.0.1, port: 1 }, { address: 127.0.0.1, port: 1 }]
    request_headers: { allow: ["x-echo-*"] }
    traffic:
      retries: { attempts: 2, base_interval_ms: 10, max_interval_ms: 50 }
      health_check: { enabled: false }
  - name: search
    routes: [{ prefix: /api/v1/search }]
    instances: []
    traffic:
      retries: { attempts: 1, base_interval_ms: 10, max_interval_ms: 20 }
"#
            .replace("instances: []", &format!("instances: [{{ address: 127.0.0.2, port: {dead_port} }}]"))
}

fn start() -> Stack {
    // A port nothing listens on: connections to it are refused.
    let dead = free_port();
    let stack = Stack::start(StackOptions { registry_yaml: registry(dead), ..Default::default() });
    stack.wait_ready();
    stack
}

fn auth() -> String {
    format!("Authorization: {}", bearer(json!({"role": "admin"})))
}

#[test]
fn idempotent_requests_are_retried_and_a_post_only_with_an_idempotency_key() {
    let stack = start();
    let a = auth();
    let r = raw::request(stack.gateway_port, "GET", "/api/v1/payments/1", &[&a, "x-echo-status: 503", "x-echo-key: get"], "");
    assert_eq!(r.status, 503);
    assert_eq!(stack.echo_count("payment", "get"), 4, "a GET is tried once and retried 3 times");

    let r = raw::request(stack.gateway_port, "POST", "/api/v1/payments/process", &[&a, "x-echo-status: 503", "x-echo-key: post"], "{}");
    assert_eq!(r.status, 503);
    assert_eq!(stack.echo_count("payment", "post"), 1, "a payment is never sent twice by the gateway");

    let r = raw::request(
        stack.gateway_port,
        "POST",
        "/api/v1/payments/process",
        &[&a, "x-echo-status: 503", "x-echo-key: keyed", "Idempotency-Key: pay-123"],
        "{}",
    );
    assert_eq!(r.status, 503);
    assert_eq!(stack.echo_count("payment", "keyed"), 4, "with an Idempotency-Key the upstream can dedupe, so it is retried");
}

#[test]
fn a_slow_upstream_gets_a_json_504_naming_the_service_and_timeout() {
    let stack = start();
    let r = raw::request(stack.gateway_port, "GET", "/api/v1/venues/1", &[&auth(), "x-echo-delay-ms: 2000"], "");
    assert_eq!(r.status, 504, "{}", r.body);
    let body = r.json();
    assert_eq!(body["statusCode"], 504);
    assert_eq!(body["code"], "GATEWAY_TIMEOUT");
    assert_eq!(body["message"], "venue service timeout after 400ms");
    assert_eq!(body["requestId"], r.header("x-request-id").unwrap());
}

#[test]
fn a_service_with_no_reachable_instance_is_a_json_503() {
    let stack = start();
    let r = raw::request(stack.gateway_port, "GET", "/api/v1/search?q=x", &[&auth()], "");
    assert_eq!(r.status, 503, "{}", r.body);
    let body = r.json();
    assert_eq!(body["code"], "SERVICE_UNAVAILABLE");
    assert_eq!(body["message"], "search service is down");
    assert_eq!(body["requestId"], r.header("x-request-id").unwrap());
}

#[test]
fn a_failing_instance_is_ejected_and_traffic_goes_to_the_healthy_one() {
    // Two ticket instances; stop one so connections to it are refused.
    let mut stack = start();
    let (idx, port) = stack
        .echoes
        .iter()
        .enumerate()
        .find(|(_, (name, _, _))| name == "ticket")
        .map(|(i, (_, port, _))| (i, *port))
        .unwrap();
    let _ = stack.echoes[idx].2.kill();
    let _ = stack.echoes[idx].2.wait();
    let a = auth();
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(raw::request(stack.gateway_port, "GET", "/api/v1/tickets/1", &[&a], "").status);
    }
    assert!(statuses.iter().all(|s| *s == 200), "connect failures are retried on the other instance: {statuses:?}");
    let admin = stack.envoys[0].admin_port;
    let ejected = time_until(Duration::from_secs(5), || {
        let clusters = client().get(format!("http://127.0.0.1:{admin}/clusters")).send().unwrap().text().unwrap();
        clusters.lines().any(|l| l.contains(&format!("svc_ticket::127.0.0.1:{port}::health_flags::")) && l.contains("failed_outlier_check"))
    });
    assert!(ejected.is_some(), "the dead instance is ejected by outlier detection");
}

#[test]
fn cors_preflights_are_answered_at_the_edge_and_unknown_origins_get_nothing() {
    let stack = start();
    let allowed = raw::request(
        stack.gateway_port,
        "OPTIONS",
        "/api/v1/venues/1",
        &["Origin: https://app.tickettoken.com", "Access-Control-Request-Method: POST", "Access-Control-Request-Headers: authorization"],
        "",
    );
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(allowed.header("access-control-allow-origin"), Some("https://app.tickettoken.com"));
    assert_eq!(allowed.header("access-control-allow-credentials"), Some("true"));
    assert!(allowed.header("access-control-allow-methods").unwrap().contains("POST"));

    let refused = raw::request(
        stack.gateway_port,
        "OPTIONS",
        "/api/v1/venues/1",
        &["Origin: https://evil.example", "Access-Control-Request-Method: POST"],
        "",
    );
    assert!(refused.header("access-control-allow-origin").is_none(), "{:?}", refused.headers);
    assert_ne!(refused.status, 401, "a preflight is never sent to authentication");

    // Actual requests: the allowed origin sees the exposed headers, others see no CORS.
    let r = raw::request(stack.gateway_port, "GET", "/api/v1/venues/1", &[&auth(), "Origin: https://app.tickettoken.com"], "");
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.tickettoken.com"));
    assert!(r.header("access-control-expose-headers").unwrap().contains("X-Request-ID"));
    let r = raw::request(stack.gateway_port, "GET", "/api/v1/venues/1", &[&auth(), "Origin: https://evil.example"], "");
    assert!(r.header("access-control-allow-origin").is_none());
}

#[test]
fn stripe_webhooks_are_verified_at_the_edge_and_reach_the_payment_service_byte_for_byte() {
    let stack = start();
    // Re-serializing this JSON would change it (spacing, key order, number forms).
    let body = "{\"type\":  \"charge.succeeded\", \"b\":1.50, \"a\":[1e3, 2.0],\n \"z\":\"\\u00e9\"}";
    let now = stagedoor_e2e::fixtures::now();
    let signature = stagedoor_filter_core::webhook::sign_stripe(b"whsec_e2e_test", body.as_bytes(), now);
    let send = |sig: &str, key: &str| {
        raw::request(
            stack.gateway_port,
            "POST",
            "/webhooks/stripe",
            &["Content-Type: application/json", &format!("Stripe-Signature: {sig}"), &format!("x-echo-key: {key}")],
            body,
        )
    };
    let r = send(&signature, "good");
    assert_eq!(r.status, 200, "{}", r.body);
    let echo = r.json();
    assert_eq!(echo["service"], "payment");
    assert_eq!(echo["path"], "/api/v1/webhooks/stripe");
    assert_eq!(echo["body"], body, "the body arrives byte for byte");
    assert_eq!(echo["headers"]["stripe-signature"], json!([signature]));
    assert!(echo["headers"].get("x-tenant-id").is_none());

    let forged = stagedoor_filter_core::webhook::sign_stripe(b"not-the-secret", body.as_bytes(), now);
    let stale = stagedoor_filter_core::webhook::sign_stripe(b"whsec_e2e_test", body.as_bytes(), now - 600);
    for (sig, code) in [
        (forged.as_str(), "WEBHOOK_SIGNATURE_INVALID"),
        (stale.as_str(), "WEBHOOK_SIGNATURE_EXPIRED"),
        ("garbage", "WEBHOOK_SIGNATURE_MALFORMED"),
    ] {
        let r = send(sig, "bad");
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.json()["code"], code);
        assert_eq!(r.json()["requestId"], r.header("x-request-id").unwrap());
    }
    let r = raw::request(stack.gateway_port, "POST", "/webhooks/stripe", &["x-echo-key: bad"], body);
    assert_eq!(r.json()["code"], "WEBHOOK_SIGNATURE_MISSING");
    assert_eq!(stack.echo_count("payment", "bad"), 0, "no forgery reached the payment service");
    // Other webhooks are not Stripe's and pass as before.
    assert_eq!(raw::request(stack.gateway_port, "POST", "/webhooks/other", &[], "{}").status, 200);
}

#[test]
fn each_client_gets_its_request_budget_then_a_json_429() {
    let registry = stagedoor_e2e::fixtures::registry_with("").replace("services:", "rate_limit: { requests: 3, window_ms: 60000 }\nservices:");
    let stack = Stack::start(StackOptions { registry_yaml: registry, ..Default::default() });
    stack.wait_ready();
    // wait_ready spent some of the budget on /health; use a fresh count from here.
    let a = auth();
    let statuses: Vec<u16> =
        (0..6).map(|_| raw::request(stack.gateway_port, "GET", "/api/v1/venues/1", &[&a], "").status).collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    let first_limited = statuses.iter().position(|s| *s == 429).unwrap();
    assert!(statuses[first_limited..].iter().all(|s| *s == 429), "once spent, the budget stays spent: {statuses:?}");
    let r = raw::request(stack.gateway_port, "GET", "/api/v1/venues/1", &[&a], "");
    assert_eq!(r.status, 429);
    let body = r.json();
    assert_eq!(body["code"], "RATE_LIMITED", "{}", r.body);
    assert_eq!(body["requestId"], r.header("x-request-id").unwrap());
    assert_eq!(r.header("x-ratelimit-limit").map(|v| v.split(',').next().unwrap_or("")), Some("3"));
    // A token cannot buy more: the limit runs before authentication, and unauthenticated
    // floods are limited too.
    assert_eq!(raw::request(stack.gateway_port, "GET", "/api/v1/venues/1", &[], "").status, 429);
}

#[test]
fn a_dead_only_instance_is_a_fast_json_503_for_get_and_post_and_is_ejected() {
    // The default traffic policy (1 s retry back-off, 5 s timeout): what an operator gets.
    let registry = stagedoor_e2e::fixtures::registry_with(
        "  - name: single\n    routes: [{ prefix: /api/v1/single }]\n    instances: [{ address: 127.0.0.1, port: 1 }]\n",
    );
    let mut stack = Stack::start(StackOptions { registry_yaml: registry, ..Default::default() });
    stack.wait_ready();
    let a = auth();
    assert_eq!(raw::request(stack.gateway_port, "GET", "/api/v1/single/1", &[&a], "").status, 200);
    let idx = stack.echoes.iter().position(|(name, _, _)| name == "single").unwrap();
    let port = stack.echoes[idx].1;
    let _ = stack.echoes[idx].2.kill();
    let _ = stack.echoes[idx].2.wait();

    // Connection refused is immediate, so the bound is the connect timeout (1 s) plus one
    // fast retry, with room for a loaded machine.
    let limit = Duration::from_millis(1500);
    for (method, body) in [("GET", ""), ("POST", "{}")] {
        let started = Instant::now();
        let r = raw::request(stack.gateway_port, method, "/api/v1/single/1", &[&a], body);
        let took = started.elapsed();
        eprintln!("{method} to a dead only instance: {} after {took:?}", r.status);
        assert_eq!(r.status, 503, "{method}: {}", r.body);
        assert_eq!(r.json()["code"], "SERVICE_UNAVAILABLE", "{method}: {}", r.body);
        assert_eq!(r.json()["message"], "single service is down", "{method}: {}", r.body);
        assert!(took < limit, "{method} took {took:?}");
    }

    let admin = stack.envoys[0].admin_port;
    let ejected = time_until(Duration::from_secs(5), || {
        raw::request(stack.gateway_port, "GET", "/api/v1/single/1", &[&a], "");
        let clusters = client().get(format!("http://127.0.0.1:{admin}/clusters")).send().unwrap().text().unwrap();
        clusters.lines().any(|l| l.contains(&format!("svc_single::127.0.0.1:{port}::health_flags::")) && l.contains("failed_outlier_check"))
    });
    eprintln!("dead only instance ejected after {ejected:?}");
    assert!(ejected.is_some(), "consecutive connect failures eject the instance");
    let started = Instant::now();
    let r = raw::request(stack.gateway_port, "GET", "/api/v1/single/1", &[&a], "");
    let took = started.elapsed();
    eprintln!("GET after the ejection: {} after {took:?}", r.status);
    assert_eq!(r.status, 503);
    assert!(took < limit, "GET after the ejection took {took:?}");
}
