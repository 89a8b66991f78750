#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Global rate limiting through real Envoys: Envoy's ratelimit filter asks the control
//! plane's RateLimitService, which counts in a real Redis (GCRA, one script call per request).
//!
//! Limits are scaled down (10 per 6 s: one request per 600 ms, a burst of 10) so the bounds
//! hold within a test's time. The bound every load test asserts is the algorithm's: within
//! any interval of length W, at most burst + W / emission requests are admitted.

use std::time::{Duration, Instant};

use serde_json::json;
use stagedoor_e2e::fixtures::{auth_yaml, bearer, VENUE_SERVICE};
use stagedoor_e2e::ports::free_port;
use stagedoor_e2e::raw::{self, RawResponse};
use stagedoor_e2e::stack::time_until;
use stagedoor_e2e::{Stack, StackOptions};

const AUTH_SERVICE: &str = "  - name: auth\n    routes: [{ prefix: /api/v1/auth }]\n    public_paths: [/api/v1/auth/login]\n    instances: [{ address: 127.0.0.1, port: 1 }]\n";

fn registry(limits: &str) -> String {
    format!(
        "{}global_rate_limit:\n  salt: e2e-salt\n  # Generous for debug builds on a shared machine; the default is 20 ms.\n  timeout_ms: 1000\n  limits:\n{limits}services:\n{VENUE_SERVICE}{AUTH_SERVICE}",
        auth_yaml()
    )
}

fn stack(limits: &str, envoys: usize) -> Stack {
    stack_and_port(limits, envoys).0
}

fn stack_and_port(limits: &str, envoys: usize) -> (Stack, u16) {
    let rate_limit_port = free_port();
    let stack = Stack::start(StackOptions {
        registry_yaml: registry(limits),
        envoys,
        redis: true,
        serve_args: vec![
            String::from("--ratelimit"),
            format!("127.0.0.1:{rate_limit_port}"),
            String::from("--ratelimit-redis-timeout-ms"),
            String::from("500"),
        ],
        ..Default::default()
    });
    stack.wait_ready();
    for i in 0..stack.envoys.len() {
        let ready = time_until(Duration::from_secs(20), || stack.config_dump(i).contains("envoy.filters.http.ratelimit.fail_open"));
        assert!(ready.is_some(), "envoy {i} never got the ratelimit filter");
    }
    (stack, rate_limit_port)
}

fn get(stack: &Stack, path: &str, auth: Option<&str>) -> RawResponse {
    let header = auth.map(|a| format!("Authorization: {a}"));
    let headers: Vec<&str> = header.iter().map(String::as_str).collect();
    raw::request(stack.gateway_port, "GET", path, &headers, "")
}

/// Every admitted reply carries the limit's headers; every 429 also Retry-After and the
/// gateway's JSON error. Returns whether it was admitted.
fn check_reply(reply: &RawResponse, limit: &str) -> bool {
    assert_eq!(reply.header("x-ratelimit-limit"), Some(limit), "{} {:?}", reply.status, reply.headers);
    let remaining: u64 = reply.header("x-ratelimit-remaining").unwrap().parse().unwrap();
    let reset: u64 = reply.header("x-ratelimit-reset").unwrap().parse().unwrap();
    match reply.status {
        200 => {
            assert!(reply.header("retry-after").is_none());
            true
        }
        429 => {
            let retry: u64 = reply.header("retry-after").expect("a 429 has Retry-After").parse().unwrap();
            assert!(remaining == 0 && retry >= 1 && reset >= retry, "{:?}", reply.headers);
            let body = reply.json();
            assert_eq!(body["code"], "RATE_LIMITED", "{}", reply.body);
            assert!(body["requestId"].as_str().is_some_and(|id| !id.is_empty()), "{}", reply.body);
            false
        }
        other => panic!("unexpected {other}: {}", reply.body),
    }
}

const VENUES_10_PER_6S: &str = "    - { name: api, requests: 10, period_ms: 6000, routes: [/api/v1/venues] }\n";

#[test]
fn two_envoys_share_one_limit_under_concurrent_load() {
    let stack = stack(VENUES_10_PER_6S, 2);
    let auth = bearer(json!({"sub": "load-user"}));
    let started = Instant::now();
    // 4 clients x 15 requests, each on a fresh connection, so the kernel spreads them over
    // both Envoys (SO_REUSEPORT). Bounded in count; each request bounded by raw's timeout.
    let admitted: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| s.spawn(|| (0..15).filter(|_| check_reply(&get(&stack, "/api/v1/venues/1", Some(&auth)), "10")).count()))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let elapsed = started.elapsed();
    let bound = 10 + elapsed.as_millis() / 600;
    println!("60 requests over 2 Envoys in {elapsed:?}: {admitted} admitted (bound: burst 10 + {elapsed:?} / 600 ms = {bound})");
    assert!(admitted as u128 <= bound, "{admitted} admitted, bound {bound}");
    assert!(admitted >= 10, "the burst is admitted: {admitted}");
    for i in 0..2 {
        let asked = stack.envoy_stat(i, "cluster.stagedoor_ratelimit.upstream_rq_total").unwrap_or(0);
        println!("envoy {i} asked the limiter {asked} times");
        assert!(asked > 0, "envoy {i} never asked the limiter");
    }
}

#[test]
fn bursts_either_side_of_a_window_boundary_are_admitted_once() {
    // The 100 at t = 59.9 s and 100 at t = 60.1 s against 100/min, scaled to 10/6 s:
    // a fixed window admits 20; GCRA at most the burst plus what 0.2 s refills (0 here).
    let stack = stack(VENUES_10_PER_6S, 1);
    let auth = bearer(json!({"sub": "boundary-user"}));
    let burst = |n: usize| (0..n).filter(|_| check_reply(&get(&stack, "/api/v1/venues/1", Some(&auth)), "10")).count();
    let started = Instant::now();
    let first = burst(10);
    std::thread::sleep(Duration::from_millis(200));
    let second = burst(10);
    let elapsed = started.elapsed();
    let bound = 10 + elapsed.as_millis() / 600;
    println!("bursts 200 ms apart: {first} + {second} admitted in {elapsed:?} (bound {bound}; a fixed window straddling them: 20)");
    assert_eq!(first, 10);
    assert!((first + second) as u128 <= bound, "{first} + {second} > {bound}");
    // Recovery: one request per 600 ms.
    std::thread::sleep(Duration::from_millis(1300));
    let recovered = burst(5);
    let since_second = elapsed.as_millis();
    println!("after 1.3 s more: {recovered} admitted ({since_second} ms after the first burst began)");
    assert!((1..=3).contains(&recovered), "recovered {recovered}");
}

#[test]
fn per_route_per_role_shadow_and_anonymous_limits() {
    let limits = "    - { name: api, requests: 3, period_ms: 60000, routes: [/api/v1/venues], roles: { admin: { unlimited: true }, venue-manager: { requests: 5 } } }\n    - { name: shadow, requests: 1, period_ms: 60000, routes: [/api/v1/venues/shadow], shadow: true }\n    - { name: login, requests: 2, period_ms: 60000, per: address, routes: [/api/v1/auth/login] }\n";
    let stack = stack(limits, 1);
    let count = |path: &str, auth: Option<&str>, n: usize, limit: &str| (0..n).filter(|_| check_reply(&get(&stack, path, auth), limit)).count();
    // Per role: customer 3, venue-manager 5, admin unlimited (and no headers).
    assert_eq!(count("/api/v1/venues/1", Some(&bearer(json!({"sub": "c1", "role": "customer"}))), 5, "3"), 3);
    assert_eq!(count("/api/v1/venues/1", Some(&bearer(json!({"sub": "m1", "role": "venue-manager"}))), 7, "5"), 5);
    let admin = bearer(json!({"sub": "a1", "role": "admin"}));
    for _ in 0..6 {
        let reply = get(&stack, "/api/v1/venues/1", Some(&admin));
        assert_eq!(reply.status, 200);
        assert!(reply.header("x-ratelimit-limit").is_none(), "unlimited: no limit to report");
    }
    // Per user: another customer has its own budget.
    assert_eq!(count("/api/v1/venues/1", Some(&bearer(json!({"sub": "c2", "role": "customer"}))), 4, "3"), 3);
    // Shadow: 1 per minute, never refused; the reply reports the enforced api limit.
    let shadow_user = bearer(json!({"sub": "s1", "role": "venue-manager"}));
    assert_eq!(count("/api/v1/venues/shadow/1", Some(&shadow_user), 4, "5"), 4);
    // Anonymous, per client address, on the login route.
    assert_eq!(count("/api/v1/auth/login", None, 4, "2"), 2);
    let status = stack.control_plane_status();
    let limits = &status["rate_limit"]["limits"];
    println!("status rate_limit: {}", status["rate_limit"]);
    assert_eq!(limits["shadow"]["shadow_refusals"], 3, "{limits}");
    assert_eq!(limits["login"]["over_limit"], 2, "{limits}");
    let metrics = reqwest_metrics(&stack);
    assert!(metrics.contains("stagedoor_ratelimit_shadow_refusals_total{limit=\"shadow\"} 3"), "{metrics}");
    assert!(metrics.contains("stagedoor_ratelimit_over_limit_total{limit=\"login\"} 2"), "{metrics}");
    // Redis holds a salted hash, never the address.
    let keys = stack.redis_cli(&["KEYS", "sd:rl:*"]);
    assert!(keys.contains("{a:") && !keys.contains("127.0.0.1"), "{keys}");
}

fn reqwest_metrics(stack: &Stack) -> String {
    stagedoor_e2e::stack::client().get(format!("http://127.0.0.1:{}/metrics", stack.metrics_port)).send().unwrap().text().unwrap()
}

#[test]
fn with_redis_stopped_routes_fail_open_closed_or_to_the_local_fallback() {
    let limits = "    - { name: api, requests: 3, period_ms: 60000, routes: [/api/v1/venues] }\n    - { name: open, requests: 3, period_ms: 60000, routes: [/api/v1/venues/open], fail_mode: open }\n    - { name: login, requests: 3, period_ms: 60000, per: address, routes: [/api/v1/auth/login] }\n";
    let mut stack = stack(limits, 1);
    let user = bearer(json!({"sub": "f1", "role": "customer"}));
    assert_eq!(get(&stack, "/api/v1/auth/login", None).status, 200, "with Redis up, logins pass");
    stack.stop_redis();
    // Local fallback (the default off /api/v1/auth): counted in the control plane alone.
    let local: Vec<u16> = (0..4).map(|_| get(&stack, "/api/v1/venues/1", Some(&user)).status).collect();
    assert_eq!(local, [200, 200, 200, 429], "the local fallback limits as the shared count would");
    // Open: admitted, whatever the count; `api` also matches but fails to the fallback.
    let open = get(&stack, "/api/v1/venues/open/1", Some(&bearer(json!({"sub": "f2", "role": "customer"}))));
    assert_eq!(open.status, 200);
    // Closed (logins by default): 503 in the gateway's JSON shape.
    let closed = get(&stack, "/api/v1/auth/login", None);
    assert_eq!(closed.status, 503, "{}", closed.body);
    assert_eq!(closed.json()["code"], "RATE_LIMITER_UNAVAILABLE", "{}", closed.body);
    let status = stack.control_plane_status();
    println!("status rate_limit with Redis stopped: {}", status["rate_limit"]);
    let fallbacks = &status["rate_limit"]["fallback_decisions"];
    assert_eq!(fallbacks["local_admitted"], 4, "{fallbacks}"); // 3 on api, 1 on open (api's fallback)
    assert_eq!(fallbacks["local_refused"], 1, "{fallbacks}");
    assert_eq!(fallbacks["closed_refused"], 1, "{fallbacks}");
    // Redis back: counted in Redis again (the store reconnects and reloads the script).
    stack.start_redis();
    let back = time_until(Duration::from_secs(10), || {
        get(&stack, "/api/v1/venues/1", Some(&bearer(json!({"sub": "f3", "role": "customer"})))).status == 200
            && stack.redis_cli(&["KEYS", "sd:rl:*"]).contains("f3")
    });
    println!("counting in Redis again after {back:?}");
    assert!(back.is_some());
}

/// Asks the RateLimitService directly with the client certificate `<stem>.pem`, or none.
async fn ask_as(stack: &Stack, port: u16, certificate: Option<&str>) -> Result<i32, String> {
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{rate_limit_descriptor::Entry, RateLimitDescriptor};
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
    use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
    let read = |name: &str| std::fs::read_to_string(stack.tls_dir.join(name)).unwrap();
    let mut tls = tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(read("ca.pem")));
    if let Some(stem) = certificate {
        tls = tls.identity(tonic::transport::Identity::from_pem(read(&format!("{stem}.pem")), read(&format!("{stem}-key.pem"))));
    }
    let endpoint = tonic::transport::Endpoint::from_shared(format!("https://127.0.0.1:{port}")).unwrap().tls_config(tls).unwrap();
    let channel = endpoint.connect().await.map_err(|e| format!("connect: {e}"))?;
    let entry = |key: &str, value: &str| Entry { key: key.into(), value: value.into() };
    let request = RateLimitRequest {
        domain: "stagedoor".into(),
        descriptors: vec![RateLimitDescriptor { entries: vec![entry("path", "/api/v1/venues/1"), entry("user", "direct")], ..Default::default() }],
        hits_addend: 0,
    };
    match RateLimitServiceClient::new(channel).should_rate_limit(request).await {
        Ok(reply) => Ok(reply.into_inner().overall_code),
        Err(status) => Err(format!("{:?}", status.code())),
    }
}

#[test]
fn only_envoys_may_ask_the_limiter_and_client_identity_headers_are_not_trusted() {
    let (stack, port) = stack_and_port(VENUES_10_PER_6S_AND_LOGIN, 1);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let envoy = format!("envoy-{}", stack.envoys[0].node_id);
    assert_eq!(rt.block_on(ask_as(&stack, port, Some(&envoy))), Ok(1), "an Envoy certificate is answered (OK)");
    assert_eq!(rt.block_on(ask_as(&stack, port, Some("operator"))), Err(String::from("PermissionDenied")));
    let anonymous = rt.block_on(ask_as(&stack, port, None));
    assert!(anonymous.is_err(), "no certificate: {anonymous:?}");
    println!("no client certificate: {anonymous:?}");
    // An anonymous caller naming a user in x-user-id is still counted per address: the
    // Stagedoor filter removes the client's copy before the limiter's descriptor is built.
    let forged: Vec<u16> = (0..4)
        .map(|i| {
            let user = format!("x-user-id: forged-{i}");
            raw::request(stack.gateway_port, "GET", "/api/v1/auth/login", &[&user, "x-tenant-id: t"], "").status
        })
        .collect();
    assert_eq!(forged, [200, 200, 429, 429], "per address, whatever x-user-id says");
}

const VENUES_10_PER_6S_AND_LOGIN: &str = "    - { name: api, requests: 10, period_ms: 6000, routes: [/api/v1/venues] }\n    - { name: login, requests: 2, period_ms: 60000, per: address, routes: [/api/v1/auth/login] }\n";
