#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The response cache (issue 14) through a real Envoy: hits and misses, TTL expiry, answers
//! that are never kept, tenant and user isolation, and single flight, counted at the echo.

use std::time::Duration;

use serde_json::json;
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
response_cache:
  # The echo's controls are declared params, so they reach it (only declared ones do).
  - name: venue
    path: "/api/v1/venues/{venueId}"
    ttl_secs: 2
    vary_query: [q, x-echo-key, x-echo-delay-ms, x-echo-set-cookie, x-echo-cache-control]
  - name: venue-mine
    path: "/api/v1/venues/{venueId}/mine"
    ttl_secs: 60
    vary_query: [x-echo-key]
    per_user: true
"#
}

fn stack() -> Stack {
    let stack = Stack::start(StackOptions { registry_yaml: registry(), ..Default::default() });
    stack.wait_ready();
    // A new VM holds authenticated requests until its first revocation list, and a held
    // request is proxied, not cached: let the list arrive first.
    let (status, _) = stack.get_as_admin("/api/v1/venues");
    assert_eq!(status, 200);
    stack
}

fn get_as(stack: &Stack, claims: serde_json::Value, path: &str) -> RawResponse {
    let auth = format!("Authorization: {}", bearer(claims));
    raw::request(stack.gateway_port, "GET", path, &[&auth], "")
}

fn get(stack: &Stack, path: &str) -> RawResponse {
    get_as(stack, json!({}), path)
}

#[test]
fn a_second_request_is_a_hit_until_the_ttl_passes() {
    let stack = stack();
    let path = "/api/v1/venues/v1?q=a&x-echo-key=ttl&utm=ignored";
    let first = get(&stack, path);
    assert_eq!((first.status, first.header("x-cache")), (200, Some("MISS")), "{}", first.body);
    // Only the declared params reach the service, sorted.
    assert_eq!(first.json()["path"], "/api/v1/venues/v1?q=a&x-echo-key=ttl");
    let second = get(&stack, "/api/v1/venues/v1?x-echo-key=ttl&q=a");
    assert_eq!(second.header("x-cache"), Some("HIT"), "{}", second.body);
    assert!(second.header("age").is_some());
    assert_eq!(second.body, first.body);
    assert_eq!(stack.echo_count("venue", "ttl"), 1);
    std::thread::sleep(Duration::from_millis(2100));
    let third = get(&stack, path);
    assert_eq!(third.header("x-cache"), Some("MISS"), "expired after 2 s");
    assert_eq!(stack.echo_count("venue", "ttl"), 2);
}

#[test]
fn set_cookie_and_no_store_answers_are_never_kept() {
    let stack = stack();
    for (control, key) in [("x-echo-set-cookie=s%3D1", "cookie"), ("x-echo-cache-control=no-store", "nostore"), ("x-echo-cache-control=private", "private")] {
        for _ in 0..2 {
            let response = get(&stack, &format!("/api/v1/venues/v1?{control}&x-echo-key={key}"));
            assert_eq!((response.status, response.header("x-cache")), (200, Some("BYPASS")), "{control}: {}", response.body);
        }
        assert_eq!(stack.echo_count("venue", key), 2, "{control}: both went to the service");
    }
}

#[test]
fn one_tenants_answer_is_never_served_to_another_nor_one_users_on_a_per_user_route() {
    let stack = stack();
    let path = "/api/v1/venues/v1?x-echo-key=tenants";
    let t1 = get_as(&stack, json!({"tenant_id": "t1"}), path);
    let t2 = get_as(&stack, json!({"tenant_id": "t2"}), path);
    assert_eq!((t1.header("x-cache"), t2.header("x-cache")), (Some("MISS"), Some("MISS")));
    assert_eq!(t2.json()["headers"]["x-tenant-id"], json!(["t2"]));
    let t1_again = get_as(&stack, json!({"tenant_id": "t1", "sub": "someone-else"}), path);
    assert_eq!(t1_again.header("x-cache"), Some("HIT"), "same tenant, a route that is not per user");
    assert_eq!(t1_again.json()["headers"]["x-tenant-id"], json!(["t1"]));
    // A spoofed tenant header changes nothing: the key holds the verified one.
    let auth = format!("Authorization: {}", bearer(json!({"tenant_id": "t1"})));
    let spoofed = raw::request(stack.gateway_port, "GET", path, &[&auth, "X-Tenant-Id: t2"], "");
    assert_eq!((spoofed.header("x-cache"), spoofed.json()["headers"]["x-tenant-id"].clone()), (Some("HIT"), json!(["t1"])));

    let mine = "/api/v1/venues/v1/mine?x-echo-key=mine";
    let u1 = get_as(&stack, json!({"sub": "u1"}), mine);
    let u2 = get_as(&stack, json!({"sub": "u2"}), mine);
    assert_eq!((u1.header("x-cache"), u2.header("x-cache")), (Some("MISS"), Some("MISS")));
    assert_eq!(u2.json()["headers"]["x-user-id"], json!(["u2"]));
    assert_eq!(get_as(&stack, json!({"sub": "u1"}), mine).header("x-cache"), Some("HIT"));
    assert_eq!(stack.echo_count("venue", "mine"), 2);
}

#[test]
fn fifty_concurrent_misses_send_one_request_upstream() {
    let stack = stack();
    let port = stack.gateway_port;
    let auth = format!("Authorization: {}", bearer(json!({})));
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let auth = auth.clone();
            std::thread::spawn(move || raw::request(port, "GET", "/api/v1/venues/hot?x-echo-key=hot&x-echo-delay-ms=500", &[&auth], ""))
        })
        .collect();
    let responses: Vec<RawResponse> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(responses.iter().all(|r| r.status == 200), "{:?}", responses.iter().map(|r| r.status).collect::<Vec<_>>());
    let misses = responses.iter().filter(|r| r.header("x-cache") == Some("MISS")).count();
    let upstream = stack.echo_count("venue", "hot");
    eprintln!("50 concurrent requests: {misses} MISS, upstream requests {upstream}");
    assert_eq!(upstream, 1, "one fetch for the key");
    assert_eq!(misses, 1);
}

#[test]
fn a_purge_through_the_control_plane_is_seen_by_both_envoys_within_a_second() {
    let stack = Stack::start(StackOptions { registry_yaml: registry(), envoys: 2, ..Default::default() });
    stack.wait_ready();
    for (i, envoy) in stack.envoys.iter().enumerate() {
        let ready = stagedoor_e2e::stack::time_until(Duration::from_secs(20), || stack.config_dump(i).contains("stagedoor_routes"));
        assert!(ready.is_some(), "envoy {} never got its routes", envoy.node_id);
    }
    let path = "/api/v1/venues/v9?x-echo-key=purge";
    // Both Envoys share the port (SO_REUSEPORT): fresh connections (each raw request is one)
    // spread over them, and each fetches once. Two fetches: both hold the answer.
    let both_hold = stagedoor_e2e::stack::time_until(Duration::from_secs(10), || {
        get(&stack, path);
        stack.echo_count("venue", "purge") >= 2
    });
    assert!(both_hold.is_some(), "the answer never reached both Envoys' caches");
    assert_eq!(stack.echo_count("venue", "purge"), 2, "one fetch per Envoy");
    assert!((0..20).all(|_| get(&stack, path).header("x-cache") == Some("HIT")), "both serve it from memory");

    // No purge of everything.
    let refused = stack.cli().args(["cache", "purge"]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no purge of everything"), "{}", String::from_utf8_lossy(&refused.stderr));

    let out = stack.cli().args(["cache", "purge", "--route", "venue", "--tenant", "t1"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let purged_at = std::time::Instant::now();
    // Each Envoy fetches again once it has dropped the entry: four fetches in all.
    let seen = stagedoor_e2e::stack::time_until(Duration::from_secs(3), || {
        get(&stack, path);
        stack.echo_count("venue", "purge") >= 4
    });
    let took = seen.map(|_| purged_at.elapsed());
    eprintln!("purge -> both Envoys fetched again after {took:?}");
    assert!(took.is_some_and(|t| t < Duration::from_secs(1)), "took {took:?}");
    assert_eq!(stack.echo_count("venue", "purge"), 4);
    let log = stack.control_plane_log();
    assert!(log.contains(r#""action":"purge""#) && log.contains(r#""tenant":"t1""#), "the purge is audited");
}
