#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Refresh-token rotation and logout answered by the gateway (issue 12), through two real
//! Envoys, the real control plane (`serve --token-endpoint`) and a real Redis: one successor
//! for 20 concurrent refreshes, reuse revoking the family on every Envoy within a second,
//! the family's absolute expiry across rotations, refresh and access tokens never passing
//! for each other, logout, and 503 JSON without Redis.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use stagedoor_e2e::fixtures::{auth_yaml, bearer, VENUE_SERVICE};
use stagedoor_e2e::ports::free_port;
use stagedoor_e2e::raw;
use stagedoor_e2e::stack::{client, time_until};
use stagedoor_e2e::{Stack, StackOptions};

const REFRESH_SECRET: &str = "e2e-refresh-secret-e2e-refresh-secret-0123";

/// The test registry: venue and auth services (echo upstreams) and the token endpoint on
/// `port`, with `settings` (YAML lines under `token_endpoint`).
fn registry(port: u16, settings: &str) -> String {
    format!(
        "{}token_endpoint:\n  instance: {{ address: 127.0.0.1, port: {port} }}\n  refresh_key: {{ kid: refresh-e2e, secret: {REFRESH_SECRET} }}\n{settings}services:\n{VENUE_SERVICE}  - name: auth\n    routes: [{{ prefix: /api/v1/auth }}]\n    instances: [{{ address: 127.0.0.1, port: 1 }}]\n    public_paths: [/api/v1/auth/login]\n",
        auth_yaml()
    )
}

fn start(settings: &str, envoys: usize, redis: bool) -> Stack {
    let port = free_port();
    let stack = Stack::start(StackOptions {
        registry_yaml: registry(port, settings),
        envoys,
        redis,
        serve_args: vec![String::from("--token-endpoint"), format!("127.0.0.1:{port}")],
        ..Default::default()
    });
    stack.wait_ready();
    for i in 0..envoys {
        let ready = time_until(Duration::from_secs(20), || stack.config_dump(i).contains("stagedoor_token_endpoint"));
        assert!(ready.is_some(), "envoy {i} never got the token endpoint's cluster");
    }
    stack
}

/// A new family's first refresh token, as `stagedoor token --refresh` prints it.
fn first_refresh_token(stack: &Stack) -> String {
    let out = stack
        .cli()
        .args(["token", "--refresh", "--registry", &stack.registry_path.display().to_string(), "--sub", "u1", "--tenant", "t1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// POST /api/v1/auth/refresh on a fresh connection (so calls spread over both Envoys).
fn refresh(stack: &Stack, token: &str) -> raw::RawResponse {
    let body = json!({ "refreshToken": token }).to_string();
    raw::request(stack.gateway_port, "POST", "/api/v1/auth/refresh", &["Content-Type: application/json", "X-Request-ID: e2e-refresh", "X-Echo-Key: e2e-refresh"], &body)
}

fn pair(response: &raw::RawResponse) -> (String, String) {
    assert_eq!(response.status, 200, "{}", response.body);
    let body = response.json();
    (body["accessToken"].as_str().unwrap().to_owned(), body["refreshToken"].as_str().unwrap().to_owned())
}

fn venue_code(stack: &Stack, access: &str) -> (u16, String) {
    let r = raw::request(stack.gateway_port, "GET", "/api/v1/venues/1", &[&format!("Authorization: Bearer {access}")], "");
    (r.status, r.json()["code"].as_str().unwrap_or("").to_owned())
}

/// Both Envoys share the gateway port (SO_REUSEPORT) and the kernel spreads fresh
/// connections over them: 20 fresh connections in a row all refused covers both.
fn refused_everywhere_within_a_second(stack: &Stack, access: &str, since: Instant) {
    let all_refused = time_until(Duration::from_secs(3), || (0..20).all(|_| venue_code(stack, access) == (401, "TOKEN_REVOKED".into())));
    let took = all_refused.map(|_| since.elapsed());
    eprintln!("revoked -> refused by every Envoy after {took:?}");
    assert!(took.is_some_and(|t| t < Duration::from_secs(1)), "took {took:?}");
}

/// The gateway's JSON error shape, with the request id Envoy gave the request (a client's
/// own id never reaches a reply).
fn assert_error(r: &raw::RawResponse, status: u16, code: &str) {
    assert_eq!(r.status, status, "{code}: {}", r.body);
    let body = r.json();
    assert_eq!((body["statusCode"].as_u64(), body["code"].as_str()), (Some(u64::from(status)), Some(code)), "{}", r.body);
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()) && body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    let request_id = body["requestId"].as_str().unwrap_or("");
    assert!(!request_id.is_empty() && request_id != "e2e-refresh", "{}", r.body);
    if let Some(header) = r.header("x-request-id") {
        assert_eq!(request_id, header);
    }
    assert_eq!(r.header("content-type"), Some("application/json"));
}

fn metric(stack: &Stack, name: &str) -> f64 {
    let page = client().get(format!("http://127.0.0.1:{}/metrics", stack.metrics_port)).send().unwrap().text().unwrap();
    page.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok()).unwrap_or(-1.0)
}

#[test]
fn twenty_concurrent_refreshes_of_one_token_yield_exactly_one_successor() {
    let stack = start("", 2, true);
    let first = first_refresh_token(&stack);
    let fid = claims(&first)["fid"].as_str().unwrap().to_owned();
    let answers: Vec<raw::RawResponse> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..20).map(|_| scope.spawn(|| refresh(&stack, &first))).collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let mut successors = BTreeSet::new();
    for answer in &answers {
        match answer.status {
            200 => {
                successors.insert(pair(answer));
            }
            401 => assert!(answer.json()["code"].is_string(), "{}", answer.body),
            other => panic!("a refresh answered {other}: {}", answer.body),
        }
    }
    let ok = answers.iter().filter(|a| a.status == 200).count();
    eprintln!("20 concurrent refreshes: {ok} answered 200 with {} distinct pair(s)", successors.len());
    assert_eq!(successors.len(), 1, "never two successors: {successors:?}");
    let (access, next) = successors.into_iter().next().unwrap();
    assert_eq!(stack.redis_cli(&["HGET", &format!("stagedoor:refresh:{fid}"), "cur"]), claims(&next)["jti"].as_str().unwrap());
    assert_eq!(claims(&access)["fid"], fid.as_str(), "the access token carries its family");
    assert_eq!(venue_code(&stack, &access).0, 200, "the successor's access token is good at the gateway");
    let rotated = refresh(&stack, &next);
    assert_eq!(rotated.status, 200, "the successor rotates in turn: {}", rotated.body);
    assert_eq!(rotated.header("cache-control"), Some("no-store"));
    // Under the endpoint's paths, and with another method: its own JSON refusals.
    assert_error(&raw::request(stack.gateway_port, "POST", "/api/v1/auth/refresh/more", &[], "{}"), 404, "NOT_FOUND");
    assert_error(&raw::request(stack.gateway_port, "GET", "/api/v1/auth/refresh", &[], ""), 405, "METHOD_NOT_ALLOWED");
    // The auth service never saw a refresh; its other paths still reach it.
    assert_eq!(stack.echo_count("auth", "e2e-refresh"), 0);
    let login = raw::request(stack.gateway_port, "POST", "/api/v1/auth/login", &["Content-Type: application/json"], "{}");
    assert_eq!(login.status, 200, "{}", login.body);
}

#[test]
fn reuse_after_the_grace_revokes_the_family_on_every_envoy_within_a_second() {
    let stack = start("  grace_secs: 1\n", 2, true);
    let first = first_refresh_token(&stack);
    let (access, next) = pair(&refresh(&stack, &first));
    assert_eq!(venue_code(&stack, &access).0, 200);
    std::thread::sleep(Duration::from_millis(1_200));

    let reused = refresh(&stack, &first);
    let reused_at = Instant::now();
    assert_error(&reused, 401, "REFRESH_TOKEN_REUSED");
    refused_everywhere_within_a_second(&stack, &access, reused_at);
    assert_error(&refresh(&stack, &next), 401, "TOKEN_REVOKED");

    // An older member inside the grace revokes too: the grace is for the immediate predecessor.
    let second = first_refresh_token(&stack);
    let (_, b) = pair(&refresh(&stack, &second));
    let (access_c, _) = pair(&refresh(&stack, &b));
    let older = refresh(&stack, &second);
    assert_eq!(older.json()["code"], "REFRESH_TOKEN_REUSED", "{}", older.body);
    refused_everywhere_within_a_second(&stack, &access_c, Instant::now());

    assert_eq!(metric(&stack, "stagedoor_refresh_reuse_detected_total"), 2.0);
    let log = stack.control_plane_log();
    let events: Vec<&str> = log.lines().filter(|l| l.contains("refresh_token_reuse")).collect();
    assert_eq!(events.len(), 2, "{log}");
    let fid = claims(&first)["fid"].as_str().unwrap().to_owned();
    assert!(events[0].contains(&fid) && events[0].contains("t1") && events[0].contains("u1") && events[0].contains("127.0.0.1"), "{}", events[0]);
    assert!(!log.contains(&first) && !log.contains(&next), "a token never reaches the log");
}

#[test]
fn the_familys_absolute_expiry_holds_across_rotations_and_tokens_never_pass_for_each_other() {
    let stack = start("  family_lifetime_secs: 10\n  idle_secs: 10\n  access_ttl_secs: 60\n", 1, true);
    let first = first_refresh_token(&stack);
    let fexp = claims(&first)["fexp"].as_i64().unwrap();
    // The served registry (secrets redacted) reads back: `apply` compares against it.
    let out = stack.cli().args(["apply", "-f", &stack.registry_path.display().to_string(), "--dry-run"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A refresh token is no access token, and an access token no refresh token.
    assert_eq!(venue_code(&stack, &first), (401, "TOKEN_UNKNOWN_KEY".into()), "the filter never holds the refresh key");
    let access = bearer(json!({"jti": "plain-access"}));
    assert_error(&refresh(&stack, access.trim_start_matches("Bearer ")), 401, "TOKEN_WRONG_TYPE");

    let mut token = first;
    let mut rotations = 0;
    let refused = loop {
        let answer = refresh(&stack, &token);
        if answer.status != 200 {
            break answer;
        }
        let (access, next) = pair(&answer);
        assert_eq!(claims(&next)["fexp"].as_i64(), Some(fexp), "rotation never extends the family");
        assert!(claims(&access)["exp"].as_i64().unwrap() <= fexp, "no access token outlives its family");
        token = next;
        rotations += 1;
        assert!(rotations < 20, "the family outlived its 10 s lifetime");
        std::thread::sleep(Duration::from_millis(1_500));
    };
    eprintln!("{rotations} rotations before the family's absolute expiry");
    assert!(rotations >= 4, "{rotations}");
    assert_error(&refused, 401, "TOKEN_EXPIRED");
}

#[test]
fn logout_revokes_the_token_and_its_family_on_every_envoy_and_answers_the_same_twice() {
    let mut stack = start("", 2, true);
    let (access, next) = pair(&refresh(&stack, &first_refresh_token(&stack)));
    let body = json!({ "refreshToken": next }).to_string();
    let authorization = format!("Authorization: Bearer {access}");
    let headers = [authorization.as_str(), "Content-Type: application/json"];
    let first = raw::request(stack.gateway_port, "POST", "/api/v1/auth/logout", &headers, &body);
    let logged_out_at = Instant::now();
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json(), json!({"loggedOut": true, "familyRevoked": true}));
    refused_everywhere_within_a_second(&stack, &access, logged_out_at);
    let again = raw::request(stack.gateway_port, "POST", "/api/v1/auth/logout", &headers, &body);
    assert_eq!((again.status, again.json()), (first.status, first.json()), "idempotent");
    assert_error(&refresh(&stack, &next), 401, "TOKEN_REVOKED");
    let fid = claims(&next)["fid"].as_str().unwrap().to_owned();
    let ttl: i64 = stack.redis_cli(&["TTL", &format!("stagedoor:revoked:family:{fid}")]).parse().unwrap();
    assert!(ttl > 0 && ttl <= 7 * 86_400, "the family's entry expires with the family: {ttl}");
    let access_ttl: i64 = stack.redis_cli(&["TTL", &format!("stagedoor:revoked:{}", claims(&access)["jti"].as_str().unwrap())]).parse().unwrap();
    assert!(access_ttl > 0 && access_ttl <= 900 + 60, "the access token's entry expires with the token: {access_ttl}");

    // The access token alone ends its family too: it names it (fid), until the family's end.
    let (access3, next3) = pair(&refresh(&stack, &first_refresh_token(&stack)));
    let out = raw::request(stack.gateway_port, "POST", "/api/v1/auth/logout", &[&format!("Authorization: Bearer {access3}")], "");
    assert_eq!((out.status, out.json()), (200, json!({"loggedOut": true, "familyRevoked": true})), "{}", out.body);
    assert_error(&refresh(&stack, &next3), 401, "TOKEN_REVOKED");
    let fid3 = claims(&next3)["fid"].as_str().unwrap().to_owned();
    let expiry: i64 = stack.redis_cli(&["GET", &format!("stagedoor:revoked:family:{fid3}")]).parse().unwrap();
    assert_eq!(Some(expiry), claims(&next3)["fexp"].as_i64(), "the entry lasts exactly as long as the family");

    // An access token from the auth service (no family) is revoked by its jti alone.
    let plain = bearer(json!({"jti": "plain-logout", "role": "admin"}));
    assert_eq!(venue_code(&stack, plain.trim_start_matches("Bearer ")).0, 200);
    let plain_header = format!("Authorization: {plain}");
    let out = raw::request(stack.gateway_port, "POST", "/api/v1/auth/logout", &[&plain_header], "");
    assert_eq!((out.status, out.json()), (200, json!({"loggedOut": true, "familyRevoked": false})), "{}", out.body);
    refused_everywhere_within_a_second(&stack, plain.trim_start_matches("Bearer "), Instant::now());
    let nothing = raw::request(stack.gateway_port, "POST", "/api/v1/auth/logout", &[], "");
    assert_error(&nothing, 401, "TOKEN_MISSING");

    // An operator revokes a family through the mTLS API.
    let (access2, next2) = pair(&refresh(&stack, &first_refresh_token(&stack)));
    let fid2 = claims(&next2)["fid"].as_str().unwrap().to_owned();
    let out = stack.cli().args(["token", "revoke", "--family", &fid2]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    refused_everywhere_within_a_second(&stack, &access2, Instant::now());
    assert_error(&refresh(&stack, &next2), 401, "TOKEN_REVOKED");

    // Redis down: 503 in the JSON shape, never an in-memory family.
    let third = first_refresh_token(&stack);
    stack.stop_redis();
    for answer in [refresh(&stack, &third), raw::request(stack.gateway_port, "POST", "/api/v1/auth/logout", &headers, &body)] {
        assert_error(&answer, 503, "TOKEN_STORE_UNAVAILABLE");
    }
}

#[test]
fn without_redis_the_endpoints_answer_503_json() {
    let stack = start("", 1, false);
    let answer = refresh(&stack, &first_refresh_token(&stack));
    assert_error(&answer, 503, "TOKEN_STORE_UNAVAILABLE");
    assert!(answer.json()["message"].as_str().unwrap().contains("--redis"), "{}", answer.body);
}
