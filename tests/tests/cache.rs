#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The response cache (issue 14) through a real Envoy: hits and misses, TTL expiry, answers
//! that are never kept, tenant and user isolation, and single flight, counted at the echo;
//! X-Cache: BYPASS on every request of a cached route the cache does not answer, the
//! counters in Envoy's stats, and stale-while-revalidate.

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
    public_paths: [/api/v1/venues/open/*]
    instances: [{ address: 127.0.0.1, port: 1 }]
response_cache:
  # The echo's controls are declared params, so they reach it (only declared ones do).
  - name: venue
    path: "/api/v1/venues/{venueId}"
    ttl_secs: 2
    vary_query: [q, x-echo-key, x-echo-delay-ms, x-echo-set-cookie, x-echo-cache-control, x-echo-status]
  - name: venue-mine
    path: "/api/v1/venues/{venueId}/mine"
    ttl_secs: 60
    vary_query: [x-echo-key]
    per_user: true
  - name: venue-open
    path: "/api/v1/venues/open/{venueId}"
    ttl_secs: 60
    vary_query: [x-echo-key]
  - name: venue-swr
    path: "/api/v1/venues/{venueId}/swr"
    ttl_secs: 1
    stale_while_revalidate: 3
    vary_query: [x-echo-key]
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
    // Only the declared params reach the service, sorted; with what the route adds to
    // every request it forwards.
    assert_eq!(first.json()["path"], "/api/v1/venues/v1?q=a&x-echo-key=ttl");
    assert_eq!(first.json()["headers"]["x-gateway-forwarded"], json!(["true"]), "{}", first.body);
    assert_eq!(first.json()["headers"]["x-original-ip"], json!(["127.0.0.1"]), "{}", first.body);
    // The route's BYPASS header adds nothing to an answer from the cache.
    assert_eq!(first.header_count("x-cache"), 1);
    let second = get(&stack, "/api/v1/venues/v1?x-echo-key=ttl&q=a");
    assert_eq!((second.header("x-cache"), second.header_count("x-cache")), (Some("HIT"), 1), "{}", second.body);
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

#[test]
fn every_request_on_a_cached_route_the_cache_does_not_answer_says_bypass() {
    let stack = stack();
    let port = stack.gateway_port;
    let auth = format!("Authorization: {}", bearer(json!({})));
    // Not GET or HEAD.
    let post = raw::request(port, "POST", "/api/v1/venues/v1?x-echo-key=post", &[&auth, "Content-Type: application/json"], "{}");
    assert_eq!((post.status, post.header("x-cache")), (200, Some("BYPASS")), "{}", post.body);
    // Anonymous, on a public path: no verified identity to key on, so not cached.
    for _ in 0..2 {
        let open = raw::request(port, "GET", "/api/v1/venues/open/o1?x-echo-key=open", &[], "");
        assert_eq!((open.status, open.header("x-cache")), (200, Some("BYPASS")), "{}", open.body);
        assert_eq!(open.header_count("x-cache"), 1);
    }
    assert_eq!(stack.echo_count("venue", "open"), 2, "both went to the service");
    // A 5xx fetched for a miss is not relayed: the request goes through its route, whose
    // retries the fetch does not have (the fetch, then the first try and its retries).
    let failing = get(&stack, "/api/v1/venues/v1?x-echo-status=503&x-echo-key=failing");
    assert_eq!((failing.status, failing.header("x-cache")), (503, Some("BYPASS")), "{}", failing.body);
    let tries = stack.echo_count("venue", "failing");
    assert!(tries >= 3, "the fetch and at least one retry through the route: {tries}");
    // A path of the same service that no cached route covers has no X-Cache at all.
    let listing = get(&stack, "/api/v1/venues?x-echo-key=listing");
    assert_eq!((listing.status, listing.header("x-cache")), (200, None));
}

#[test]
fn hits_misses_bypasses_stores_and_the_cache_size_are_in_envoys_stats_per_route() {
    let stack = stack();
    let path = "/api/v1/venues/v2?x-echo-key=counted";
    assert_eq!(get(&stack, path).header("x-cache"), Some("MISS"));
    assert_eq!(get(&stack, path).header("x-cache"), Some("HIT"));
    assert_eq!(get(&stack, path).header("x-cache"), Some("HIT"));
    let cookie = get(&stack, "/api/v1/venues/v2?x-echo-key=counted-cookie&x-echo-set-cookie=s%3D1");
    assert_eq!(cookie.header("x-cache"), Some("BYPASS"), "a miss whose answer is not kept");
    let auth = format!("Authorization: {}", bearer(json!({})));
    let post = raw::request(stack.gateway_port, "POST", "/api/v1/venues/v2", &[&auth, "Content-Type: application/json"], "{}");
    assert_eq!(post.header("x-cache"), Some("BYPASS"));
    let stat = |kind: &str| stack.envoy_stat(0, &format!("wasmcustom.stagedoor_response_cache_{kind}.venue")).unwrap_or(0);
    // Counted in VM memory, handed to Envoy on the filter's tick (500 ms).
    let flushed = stagedoor_e2e::stack::time_until(Duration::from_secs(5), || stat("bypasses") >= 2);
    assert!(flushed.is_some(), "never flushed: {}", stack.envoy_admin(0, "/stats?filter=stagedoor_response_cache"));
    let counts: Vec<u64> = ["hits", "misses", "stores", "bypasses", "stale_hits"].iter().map(|k| stat(k)).collect();
    assert_eq!(counts, vec![2, 2, 1, 2, 0], "hits, misses, stores, bypasses, stale: {}", stack.envoy_admin(0, "/stats?filter=stagedoor_response_cache"));
    // The other routes' counters are not defined before their first event.
    assert_eq!(stack.envoy_stat(0, "wasmcustom.stagedoor_response_cache_hits.venue-mine"), None);
    let entries = stack.envoy_stat(0, "wasmcustom.stagedoor_response_cache_entries").unwrap_or(0);
    let bytes = stack.envoy_stat(0, "wasmcustom.stagedoor_response_cache_bytes").unwrap_or(0);
    assert_eq!(entries, 1, "the one answer kept");
    assert!(bytes > 100, "its body and headers: {bytes}");
}

#[test]
fn past_the_ttl_a_stale_answer_is_served_at_once_while_one_background_fetch_renews_it() {
    let stack = stack();
    let path = "/api/v1/venues/v1/swr?x-echo-key=swr";
    assert_eq!(get(&stack, path).header("x-cache"), Some("MISS"));
    std::thread::sleep(Duration::from_millis(1100));
    // Past the 1 s ttl, within the 3 s window: answered from memory, Age beyond the ttl.
    let stale = get(&stack, path);
    assert_eq!((stale.status, stale.header("x-cache")), (200, Some("STALE")), "{}", stale.body);
    let age: u64 = stale.header("age").and_then(|a| a.parse().ok()).unwrap();
    assert!(age >= 1, "age {age}");
    // More requests meanwhile: stale (or fresh, once the refresh is in), never upstream.
    for _ in 0..5 {
        let again = get(&stack, path);
        assert!(matches!(again.header("x-cache"), Some("STALE" | "HIT")), "{:?}", again.header("x-cache"));
    }
    // One refresh, sent on the filter's next tick.
    let refreshed = stagedoor_e2e::stack::time_until(Duration::from_secs(3), || stack.echo_count("venue", "swr") >= 2);
    assert!(refreshed.is_some(), "never refreshed");
    // The echo counts the refresh when it arrives, a moment before the filter stores its
    // answer: until then requests are still answered stale (and still not upstream).
    let mut fresh = None;
    let stored = stagedoor_e2e::stack::time_until(Duration::from_secs(2), || {
        let response = get(&stack, path);
        let hit = response.header("x-cache") == Some("HIT");
        fresh = Some(response);
        hit
    });
    assert!(stored.is_some(), "the refreshed answer never served: {:?}", fresh.map(|r| r.headers));
    assert_eq!(fresh.unwrap().header("age"), Some("0"), "the refreshed answer is new");
    assert_eq!(stack.echo_count("venue", "swr"), 2, "one background fetch for every stale answer");
    let stale_counted = stagedoor_e2e::stack::time_until(Duration::from_secs(3), || {
        stack.envoy_stat(0, "wasmcustom.stagedoor_response_cache_stale_hits.venue-swr").unwrap_or(0) >= 1
    });
    assert!(stale_counted.is_some(), "the stale answers are counted");
    // Beyond ttl + window (1 + 3 s after the refresh): a plain miss.
    std::thread::sleep(Duration::from_millis(4300));
    assert_eq!(get(&stack, path).header("x-cache"), Some("MISS"));
    assert_eq!(stack.echo_count("venue", "swr"), 3);
}
