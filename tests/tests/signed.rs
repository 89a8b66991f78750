#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Signed service-to-service requests through two real Envoys (issue 15): the filter checks
//! `x-signature` (HMAC-SHA256 over the canonical string) and `x-timestamp`, and spends each
//! verified signature once in the control plane's RateLimitService, which counts in a real
//! Redis, so a signature used on one Envoy is refused on the other.

use std::time::Duration;

use serde_json::Value;
use stagedoor_e2e::fixtures::{auth_yaml, now, VENUE_SERVICE};
use stagedoor_e2e::ports::free_port;
use stagedoor_e2e::raw::{self, RawResponse};
use stagedoor_e2e::stack::{time_until, wait_for};
use stagedoor_e2e::{Stack, StackOptions};
use stagedoor_filter_core::signature::sign;

const ACME_SECRET: &str = "e2e-acme-signing-secret-0123456789";
const LEGACY_SECRET: &str = "e2e-legacy-signing-secret-0123456789";

/// A payments service whose every request must be signed (public: no token needed), and a
/// reports route of the venue service that must be signed besides its token.
fn registry() -> String {
    format!(
        "{}signed_requests:
  # Generous for debug builds on a shared machine; the default is 250 ms.
  replay_timeout_ms: 2000
  keys:
    - {{ id: acme, secret: {ACME_SECRET} }}
    - {{ id: old-node, secret: {LEGACY_SECRET}, legacy_body_only: true }}
services:
{VENUE_SERVICE}  - name: payment
    routes: [{{ prefix: /api/v1/payments }}]
    public_paths: [/api/v1/payments/*]
    require_signatures: true
    instances: [{{ address: 127.0.0.1, port: 1 }}]
",
        auth_yaml()
    )
}

fn start(envoys: usize) -> Stack {
    let stack = Stack::start(StackOptions {
        registry_yaml: registry(),
        envoys,
        redis: true,
        serve_args: vec![String::from("--ratelimit"), format!("127.0.0.1:{}", free_port())],
        ..Default::default()
    });
    stack.wait_ready();
    for i in 0..envoys {
        let ready = time_until(Duration::from_secs(20), || stack.config_dump(i).contains("\"stagedoor_ratelimit\""));
        assert!(ready.is_some(), "envoy {i} never got the RateLimitService's cluster");
    }
    stack
}

struct Signed {
    key: &'static str,
    timestamp: String,
    signature: String,
}

fn signed(key: &'static str, secret: &str, timestamp: i64, method: &str, target: &str, body: &str) -> Signed {
    let timestamp = timestamp.to_string();
    let signature = sign(secret.as_bytes(), &timestamp, method, target, body.as_bytes(), false);
    Signed { key, timestamp, signature }
}

fn send(stack: &Stack, method: &str, target: &str, signature: Option<&Signed>, body: &str) -> RawResponse {
    let mut lines = vec![String::from("Content-Type: application/json")];
    if let Some(s) = signature {
        lines.push(format!("X-Signature-Key-Id: {}", s.key));
        lines.push(format!("X-Timestamp: {}", s.timestamp));
        lines.push(format!("X-Signature: {}", s.signature));
    }
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    raw::request(stack.gateway_port, method, target, &lines, body)
}

/// A 401 (or 503) in the gateway's JSON shape with `code`.
fn assert_refused(reply: &RawResponse, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["code"], code, "{}", reply.body);
    assert_eq!(body["statusCode"], status);
    assert!(body["requestId"].as_str().is_some_and(|id| !id.is_empty()), "{}", reply.body);
    assert!(reply.header("www-authenticate").is_none(), "not a bearer token's refusal");
}

fn stat(stack: &Stack, envoy: usize, name: &str) -> u64 {
    stack.envoy_stat(envoy, &format!("wasmcustom.{name}")).unwrap_or(0)
}

#[test]
fn signed_requests_are_checked_and_spent_once_across_two_envoys() {
    let stack = start(2);
    let target = "/api/v1/payments/refund?dry=1";
    let body = r#"{"payment":"p1", "amount": 100}"#;

    // Valid: reaches the upstream with the body byte for byte.
    let first_second = now();
    let good = signed("acme", ACME_SECRET, first_second, "POST", target, body);
    let reply = send(&stack, "POST", target, Some(&good), body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let echoed: Value = reply.json();
    assert_eq!(echoed["body"], body);
    assert_eq!(echoed["service"], "payment");

    // Which Envoy verified it: the other is where a replay must also be refused.
    let mut first = None;
    assert!(wait_for(Duration::from_secs(5), || {
        first = (0..2).find(|&i| stat(&stack, i, "stagedoor_signature_verified") == 1);
        first.is_some()
    }));
    let other = 1 - first.unwrap();

    // Replayed: every reuse is refused, on whichever Envoy it lands. Fresh connections
    // spread over both (SO_REUSEPORT); bounded to 40 tries until the other Envoy saw one.
    let mut replays = 0;
    for _ in 0..40 {
        assert_refused(&send(&stack, "POST", target, Some(&good), body), 401, "SIGNATURE_REPLAYED");
        replays += 1;
        if stat(&stack, other, "stagedoor_signature_refused_signature_replayed") > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        wait_for(Duration::from_secs(5), || stat(&stack, other, "stagedoor_signature_refused_signature_replayed") > 0),
        "the Envoy that never saw the first use refused a replay ({replays} replays sent)"
    );
    println!("{replays} replays, all refused; envoy {other} (not the first use's) refused at least one");

    // Tampered body, path or method: invalid, and no replay slot is spent on them.
    // Another second than the first request's: the same second would be the same signature
    // (derived from it, not from the clock: the replays above may take a second or two).
    let fresh = signed("acme", ACME_SECRET, first_second - 1, "POST", target, body);
    assert_refused(&send(&stack, "POST", target, Some(&fresh), r#"{"payment":"p1", "amount": 900}"#), 401, "SIGNATURE_INVALID");
    assert_refused(&send(&stack, "POST", "/api/v1/payments/refund?dry=0", Some(&fresh), body), 401, "SIGNATURE_INVALID");
    assert_refused(&send(&stack, "PUT", target, Some(&fresh), body), 401, "SIGNATURE_INVALID");
    let reply = send(&stack, "POST", target, Some(&fresh), body);
    assert_eq!(reply.status, 200, "the untampered request still has its slot: {}", reply.body);

    // Expired and future timestamps, just past the 300 s tolerance; just inside passes.
    let old = signed("acme", ACME_SECRET, now() - 330, "POST", target, body);
    assert_refused(&send(&stack, "POST", target, Some(&old), body), 401, "SIGNATURE_EXPIRED");
    let future = signed("acme", ACME_SECRET, now() + 330, "POST", target, body);
    assert_refused(&send(&stack, "POST", target, Some(&future), body), 401, "SIGNATURE_EXPIRED");
    let inside = signed("acme", ACME_SECRET, now() + 240, "POST", target, body);
    assert_eq!(send(&stack, "POST", target, Some(&inside), body).status, 200);

    // Unknown key id, and missing headers.
    let stranger = signed("nobody", ACME_SECRET, now(), "POST", target, body);
    assert_refused(&send(&stack, "POST", target, Some(&stranger), body), 401, "SIGNATURE_UNKNOWN_KEY");
    assert_refused(&send(&stack, "POST", target, None, body), 401, "SIGNATURE_MISSING");
    assert_refused(&send(&stack, "GET", "/api/v1/payments/p1", None, ""), 401, "SIGNATURE_MISSING");

    // The original's form (`timestamp.body`, milliseconds) for a key marked legacy_body_only.
    let ms = (now() * 1000).to_string();
    let legacy = Signed { key: "old-node", signature: sign(LEGACY_SECRET.as_bytes(), &ms, "", "", body.as_bytes(), true), timestamp: ms };
    assert_eq!(send(&stack, "POST", target, Some(&legacy), body).status, 200);

    // A signed GET without a body (checked at the headers) passes once.
    let get = signed("acme", ACME_SECRET, now(), "GET", "/api/v1/payments/p1", "");
    assert_eq!(send(&stack, "GET", "/api/v1/payments/p1", Some(&get), "").status, 200);
    assert_refused(&send(&stack, "GET", "/api/v1/payments/p1", Some(&get), ""), 401, "SIGNATURE_REPLAYED");

    // A route that needs no signature streams as before.
    let reply = send(&stack, "GET", "/api/v1/venues/v1", None, "");
    assert_eq!(reply.status, 401, "the venue service still wants its token: {}", reply.body);
    assert_eq!(reply.json()["code"], "TOKEN_MISSING", "{}", reply.body);
}

#[test]
fn the_replay_check_fails_closed_without_its_store() {
    let mut stack = start(1);
    stack.stop_redis();
    let target = "/api/v1/payments/refund";
    let body = r#"{"payment":"p2"}"#;
    let request = signed("acme", ACME_SECRET, now(), "POST", target, body);
    let reply = send(&stack, "POST", target, Some(&request), body);
    assert_refused(&reply, 503, "SIGNATURE_REPLAY_UNAVAILABLE");
    // A bad signature is still told as such: only verified signatures ask the store.
    let bad = Signed { signature: "00".repeat(32), ..signed("acme", ACME_SECRET, now(), "POST", target, body) };
    assert_refused(&send(&stack, "POST", target, Some(&bad), body), 401, "SIGNATURE_INVALID");
}
