#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The per-Envoy fallback when the limiter itself cannot be reached: the control plane pushes
//! the global limits but serves no RateLimitService (no `--ratelimit`), so Envoy's
//! stagedoor_ratelimit cluster has no endpoint and every call to it fails at once.

use std::time::{Duration, Instant};

use serde_json::json;
use stagedoor_e2e::fixtures::{auth_yaml, bearer, VENUE_SERVICE};
use stagedoor_e2e::raw::{self, RawResponse};
use stagedoor_e2e::stack::time_until;
use stagedoor_e2e::{Stack, StackOptions};

const AUTH_SERVICE: &str = "  - name: auth\n    routes: [{ prefix: /api/v1/auth }]\n    public_paths: [/api/v1/auth/login, /api/v1/auth/register]\n    instances: [{ address: 127.0.0.1, port: 1 }]\n";

/// `limited` falls back locally (the default off /api/v1/auth), `open` says so, `login`
/// fails closed (the default under /api/v1/auth), `register` falls back locally per address.
const LIMITS: &str = "    - { name: limited, requests: 3, period_ms: 60000, routes: [/api/v1/venues/limited] }\n    - { name: register, requests: 2, period_ms: 60000, per: address, routes: [/api/v1/auth/register], fail_mode: local_fallback }\n    - { name: open, requests: 3, period_ms: 60000, routes: [/api/v1/venues/open], fail_mode: open }\n    - { name: login, requests: 3, period_ms: 60000, per: address, routes: [/api/v1/auth/login] }\n";

fn stack_without_limiter() -> Stack {
    let registry = format!("{}global_rate_limit:\n  salt: e2e-salt\n  limits:\n{LIMITS}services:\n{VENUE_SERVICE}{AUTH_SERVICE}", auth_yaml());
    let stack = Stack::start(StackOptions { registry_yaml: registry, envoys: 1, ..Default::default() });
    stack.wait_ready();
    let ready = time_until(Duration::from_secs(20), || stack.config_dump(0).contains("envoy.filters.http.local_ratelimit.global_fallback"));
    assert!(ready.is_some(), "envoy never got the fallback filter");
    stack
}

fn get(stack: &Stack, path: &str, auth: Option<&str>) -> RawResponse {
    let header = auth.map(|a| format!("Authorization: {a}"));
    let headers: Vec<&str> = header.iter().map(String::as_str).collect();
    raw::request(stack.gateway_port, "GET", path, &headers, "")
}

#[test]
fn with_the_limiter_unreachable_local_fallback_routes_are_limited_per_envoy() {
    let stack = stack_without_limiter();
    let alice = bearer(json!({"sub": "alice", "role": "customer"}));
    let started = Instant::now();
    let statuses: Vec<u16> = (0..5).map(|_| get(&stack, "/api/v1/venues/limited/1", Some(&alice)).status).collect();
    println!("5 requests with no limiter in {:?}: {statuses:?}", started.elapsed());
    assert_eq!(statuses, [200, 200, 200, 429, 429], "the limit's burst per Envoy, then refused");
    let refused = get(&stack, "/api/v1/venues/limited/1", Some(&alice));
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["code"], "RATE_LIMITED", "the gateway's JSON shape: {}", refused.body);
    let retry: u64 = refused.header("retry-after").expect("a 429 has Retry-After").parse().unwrap();
    assert!(retry >= 1, "{:?}", refused.headers);
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
    assert!(refused.header("x-ratelimit-reset").is_some(), "never a 429 without a reset value");
    // Per user: another caller has its own bucket.
    let bob = bearer(json!({"sub": "bob", "role": "customer"}));
    assert_eq!(get(&stack, "/api/v1/venues/limited/1", Some(&bob)).status, 200);
    // Anonymous, per client address: a forged x-user-id is removed by the Stagedoor filter
    // before the fallback's descriptor is built, so it does not buy a bucket of its own.
    let anonymous: Vec<u16> = (0..4)
        .map(|i| raw::request(stack.gateway_port, "GET", "/api/v1/auth/register", &[&format!("x-user-id: forged-{i}")], "").status)
        .collect();
    assert_eq!(anonymous, [200, 200, 429, 429], "per address, whatever x-user-id says");
    // Fail open without a fallback: admitted, whatever the count.
    let open: Vec<u16> = (0..5).map(|_| get(&stack, "/api/v1/venues/open/1", Some(&alice)).status).collect();
    assert_eq!(open, [200; 5]);
    // Fail closed: 503 in the gateway's JSON shape.
    let closed = get(&stack, "/api/v1/auth/login", None);
    assert_eq!(closed.status, 503, "{}", closed.body);
    assert_eq!(closed.json()["code"], "RATE_LIMITER_UNAVAILABLE", "{}", closed.body);
}
