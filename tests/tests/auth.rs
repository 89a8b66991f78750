#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Authentication, identity headers, header policy and RBAC through a real Envoy running the
//! Stagedoor filter.

use serde_json::{json, Value};
use stagedoor_e2e::fixtures::{auth_yaml, bearer, token, token_with_secret, IDENTITY_KEY};
use stagedoor_e2e::raw::{self, RawResponse};
use stagedoor_e2e::{Stack, StackOptions};

fn registry() -> String {
    auth_yaml()
        + r#"
services:
  - name: auth
    routes: [{ prefix: /api/v1/auth }]
    instances: [{ address: 127.0.0.1, port: 1 }]
    public_paths: [/api/v1/auth/login, /api/v1/auth/register, /api/v1/auth/refresh, "/api/v1/auth/public/*"]
    request_headers: { allow: ["x-echo-*"] }
  - name: venue
    routes: [{ prefix: /api/v1/venues }]
    instances: [{ address: 127.0.0.1, port: 1 }]
    rules:
      - { method: POST, path: "/api/v1/venues/{venueId}/events", permission: events:create }
    request_headers: { allow: ["x-echo-*"] }
  - name: ticket
    routes: [{ prefix: /api/v1/tickets }]
    instances: [{ address: 127.0.0.1, port: 1 }]
    rules:
      - { method: POST, path: /api/v1/tickets/validate, permission: tickets:validate }
      - { method: GET, path: "/api/v1/tickets/users/{userId}", permission: tickets:view }
  - name: marketplace
    routes: [{ prefix: /api/v1/marketplace }]
    instances: [{ address: 127.0.0.1, port: 1 }]
    rules:
      - { method: POST, path: /api/v1/marketplace/listings, permission: tickets:transfer-own }
"#
}

fn start() -> Stack {
    let stack = Stack::start(StackOptions { registry_yaml: registry(), ..Default::default() });
    stack.wait_ready();
    stack
}

fn send(stack: &Stack, method: &str, target: &str, headers: &[&str]) -> RawResponse {
    raw::request(stack.gateway_port, method, target, headers, "")
}

fn with_token(stack: &Stack, method: &str, target: &str, patch: Value) -> RawResponse {
    let auth = format!("Authorization: {}", bearer(patch));
    send(stack, method, target, &[&auth])
}

fn assert_error(r: &RawResponse, status: u16, code: &str) {
    assert_eq!(r.status, status, "{code}: {}", r.body);
    let body = r.json();
    assert_eq!(body["statusCode"], status, "{}", r.body);
    assert_eq!(body["code"], code, "{}", r.body);
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    let request_id = r.header("x-request-id").expect("x-request-id on every reply");
    assert_eq!(body["requestId"], request_id);
    assert_eq!(r.header_count("x-request-id"), 1);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    if status == 401 {
        assert_eq!(r.header("www-authenticate"), Some(r#"Bearer error="invalid_token""#));
    }
    for secret in [stagedoor_e2e::fixtures::SECRET, IDENTITY_KEY] {
        assert!(!r.body.contains(secret));
    }
}

#[test]
fn every_token_failure_is_a_401_with_its_reason_code() {
    let stack = start();
    let target = "/api/v1/venues/v1";
    assert_error(&send(&stack, "GET", target, &[]), 401, "TOKEN_MISSING");
    assert_error(&send(&stack, "GET", target, &["Authorization: Bearer nope"]), 401, "TOKEN_MALFORMED");
    assert_error(&send(&stack, "GET", target, &["Authorization: Basic dXNlcjpwYXNz"]), 401, "TOKEN_MALFORMED");
    let now = stagedoor_e2e::fixtures::now();
    assert_error(&with_token(&stack, "GET", target, json!({"exp": now - 120})), 401, "TOKEN_EXPIRED");
    assert_error(&with_token(&stack, "GET", target, json!({"nbf": now + 600})), 401, "TOKEN_NOT_YET_VALID");
    assert_error(&with_token(&stack, "GET", target, json!({"iss": "someone-else"})), 401, "TOKEN_WRONG_ISSUER");
    assert_error(&with_token(&stack, "GET", target, json!({"aud": "other"})), 401, "TOKEN_WRONG_AUDIENCE");
    assert_error(&with_token(&stack, "GET", target, json!({"type": "refresh"})), 401, "TOKEN_WRONG_TYPE");
    assert_error(&with_token(&stack, "GET", target, json!({"tenant_id": null})), 401, "TOKEN_MISSING_TENANT");
    let forged = format!("Authorization: Bearer {}", token_with_secret(json!({}), "not-the-secret-not-the-secret-0123456"));
    assert_error(&send(&stack, "GET", target, &[&forged]), 401, "TOKEN_INVALID_SIGNATURE");
    let huge = format!("Authorization: Bearer {}.{}.{}", "a".repeat(4000), "b".repeat(4000), "c".repeat(300));
    assert_error(&send(&stack, "GET", target, &[&huge]), 401, "TOKEN_TOO_LARGE");
    let good = bearer(json!({}));
    let two = [format!("Authorization: {good}"), format!("authorization: {good}")];
    assert_error(&send(&stack, "GET", target, &[&two[0], &two[1]]), 401, "TOKEN_MALFORMED");
    let two_in_one = format!("Authorization: {good} {}", token(json!({})));
    assert_error(&send(&stack, "GET", target, &[&two_in_one]), 401, "TOKEN_MALFORMED");
    // alg=none, unsigned.
    let none = format!("Authorization: Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(stagedoor_e2e::fixtures::claims(json!({})).to_string())
    });
    assert_error(&send(&stack, "GET", target, &[&none]), 401, "TOKEN_MALFORMED");
    // A token in the query string is never read.
    assert_error(&send(&stack, "GET", &format!("{target}?access_token={}", token(json!({}))), &[]), 401, "TOKEN_MISSING");
}

#[test]
fn the_upstream_sees_exactly_one_identity_taken_from_the_token() {
    let stack = start();
    let auth = format!("Authorization: {}", bearer(json!({})));
    let r = send(&stack, "GET", "/api/v1/venues/v1?x=1", &[
        &auth,
        "X-Tenant-ID: evil",
        "x-tenant-id: evil2",
        "X-TENANT-ID: evil3",
        "x_tenant_id: evil4",
        "X-User-Role: admin",
        "x-user-id: someone",
        "X-User-Permissions: *",
        "x-venue-ids: v9",
        "X-Tenant-Source: header",
        "X-Internal-Key: k",
        "x-internal-anything: y",
        "X-Stagedoor-Identity: forged",
        "X-HTTP-Method-Override: DELETE",
        "X-Original-URL: /admin",
        "X-Original-IP: 6.6.6.6",
        "X-Gateway-Forwarded: false",
        "X-Real-IP: 6.6.6.6",
        "Cookie: session=1",
        "X-Custom-Trace: keep-me",
        "Connection: keep-alive, x-tenant-id",
    ]);
    assert_eq!(r.status, 200, "{}", r.body);
    let echo = r.json();
    let h = &echo["headers"];
    assert_eq!(h["x-tenant-id"], json!(["t1"]));
    assert_eq!(h["x-tenant-source"], json!(["jwt"]));
    assert_eq!(h["x-user-id"], json!(["u1"]));
    assert_eq!(h["x-user-role"], json!(["venue-manager"]));
    assert_eq!(h["x-venue-ids"], json!(["v1,v2"]));
    assert_eq!(h["x-user-permissions"].as_array().unwrap().len(), 1);
    assert_eq!(h["x-gateway-forwarded"], json!(["true"]));
    assert_eq!(h["x-original-ip"], json!(["127.0.0.1"]));
    assert_eq!(h["x-custom-trace"], json!(["keep-me"]));
    for gone in [
        "x_tenant_id", "x-internal-key", "x-internal-anything", "x-http-method-override", "x-original-url",
        "x-real-ip", "cookie",
    ] {
        assert!(h.get(gone).is_none(), "{gone} reached the upstream: {h}");
    }
    // Whatever the case or count the client used, one copy each, in raw form too.
    let raw: Vec<(String, String)> = serde_json::from_value(echo["raw_headers"].clone()).unwrap();
    assert_eq!(raw.iter().filter(|(n, _)| n.eq_ignore_ascii_case("x-tenant-id")).count(), 1);
    assert!(!raw.iter().any(|(n, v)| n.eq_ignore_ascii_case("connection") && v.contains("x-tenant-id")));
    let statement = h["x-stagedoor-identity"][0].as_str().unwrap();
    let claims = stagedoor_filter_core::identity::verify_statement(IDENTITY_KEY.as_bytes(), statement).unwrap();
    assert_eq!(claims["tenant_id"], "t1");
}

#[test]
fn a_spoofed_identity_header_the_gateway_does_not_set_never_reaches_the_upstream() {
    // A token without a venues claim gets no x-venue-ids: a client's copies must go, not
    // pass because nothing replaced them.
    let stack = start();
    let auth = format!("Authorization: {}", bearer(json!({"role": "customer", "venues": null})));
    let r = send(&stack, "GET", "/api/v1/venues/v1", &[&auth, "X-Venue-Ids: v9", "x-venue-ids: v8", "X-Tenant-ID: evil"]);
    assert_eq!(r.status, 200, "{}", r.body);
    let h = &r.json()["headers"];
    assert!(h.get("x-venue-ids").is_none(), "x-venue-ids reached the upstream: {h}");
    assert_eq!(h["x-tenant-id"], json!(["t1"]));
    assert_eq!(h["x-user-role"], json!(["customer"]));
}

#[test]
fn header_bytes_that_are_not_utf8_are_handled_and_never_stop_the_filter() {
    // HTTP/1 allows such bytes in values; the proxy-wasm SDK's own header reader panics on
    // them, which killed the VM and failed every later request on the worker.
    let stack = start();
    let auth = format!("Authorization: {}", bearer(json!({})));
    for _ in 0..3 {
        let r = raw::request_bytes(
            stack.gateway_port,
            "GET",
            "/api/v1/venues/v1",
            &[auth.as_bytes(), b"X-Echo-Note: caf\xe9 \xff", b"X-Tenant-ID: \xfe\xff", b"X-Request-ID: \xff"],
            "",
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let h = &r.json()["headers"];
        assert_eq!(h["x-tenant-id"], json!(["t1"]), "the spoofed copy is still replaced: {h}");
        assert_eq!(h["x-echo-note"].as_array().map(Vec::len), Some(1), "an allowed header passes as it came");
        // Envoy may already replace such an id with its own; either way a plain one arrives.
        let id = h["x-request-id"][0].as_str().unwrap_or_default();
        assert!(stagedoor_filter_core::decision::is_plain_request_id(id), "{id}");
    }
    let bad_token = raw::request_bytes(stack.gateway_port, "GET", "/api/v1/venues/v1", &[b"Authorization: Bearer \xff\xfe"], "");
    assert_error(&bad_token, 401, "TOKEN_MALFORMED");
    let bad_venue =
        raw::request_bytes(stack.gateway_port, "GET", "/api/v1/venues/v1", &[auth.as_bytes(), b"X-Venue-ID: v1\xff"], "");
    assert_error(&bad_venue, 403, "VENUE_ACCESS_DENIED");
    assert_eq!(with_token(&stack, "GET", "/api/v1/venues/v1", json!({})).status, 200, "the filter still serves");

    // The same over HTTP/2 (h2c), where the bytes reach the filter the same way.
    let h2 = reqwest::blocking::Client::builder().http2_prior_knowledge().no_proxy().build().unwrap();
    let url = format!("http://127.0.0.1:{}/api/v1/venues/v1", stack.gateway_port);
    for _ in 0..3 {
        let r = h2
            .get(&url)
            .header("authorization", bearer(json!({})))
            .header("x-echo-note", reqwest::header::HeaderValue::from_bytes(b"caf\xe9 \xff").unwrap())
            .send()
            .unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), 200);
    }
}

#[test]
fn public_paths_cannot_be_used_to_reach_protected_ones() {
    let stack = start();
    // The public path itself works without a token and asserts no identity.
    let r = send(&stack, "POST", "/api/v1/auth/login", &["X-Tenant-ID: evil"]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["headers"].get("x-tenant-id").is_none());

    let attempts = [
        "/api/v1/auth/login/../../venues/v1",
        "/api/v1/auth/login/%2e%2e/%2e%2e/venues/v1",
        "/api/v1/auth/login/..%2f..%2fvenues/v1",
        "/api/v1/auth/login%2f..%2f..%2fvenues%2fv1",
        "/api/v1/auth/login%2F..%2F..%2Fvenues",
        "/api/v1/auth/login\\..\\..\\venues\\v1",
        "/api/v1/auth/login;/../../venues/v1",
        "/api/v1/auth/login/;/../../venues/v1",
        "//api/v1/auth/login/../../venues/v1",
        "/api/v1/auth//login/../../../api/v1/venues/v1",
        "/api/v1/auth/login-admin",
        "/api/v1/auth/loginx",
        "/api/v1/auth/login/x",
        "/API/v1/auth/login",
        "/api/v1/auth/LOGIN",
        "/api/v1/venues/v1?/api/v1/auth/login",
        "/api/v1/venues/v1#/api/v1/auth/login",
        "/api/v1/venues/v1/..;/../auth/login",
        "/api/v1/auth/public",
        "/api/v1/auth/public/../../venues/v1",
        "/api/v1/auth/public/%2e%2e/%2e%2e/venues/v1",
        "/api/v1/auth/register/../refresh/../../venues/v1",
        "/api/v1/auth/./login/../../venues/v1",
        "/api/v1/auth/login%00/../../venues/v1",
        "/api/v1/auth/login/%252e%252e/%252e%252e/venues/v1",
    ];
    for target in attempts {
        let r = send(&stack, "GET", target, &["X-Tenant-ID: evil"]);
        if r.status == 200 {
            let echo = r.json();
            // Reaching an upstream without a token is only fine on a public path.
            let path = echo["path"].as_str().unwrap_or_default();
            let public = ["/api/v1/auth/login", "/api/v1/auth/register", "/api/v1/auth/refresh"].contains(&path)
                || path.starts_with("/api/v1/auth/public/");
            assert!(public && echo["service"] == "auth", "{target} reached {path} at {}", echo["service"]);
            assert!(echo["headers"].get("x-tenant-id").is_none(), "{target}");
        } else {
            assert!([400, 401, 404].contains(&r.status), "{target}: {} {}", r.status, r.body);
        }
    }
}

#[test]
fn rbac_allows_and_denies_with_venue_scope_and_own_permissions() {
    let stack = start();
    // venue-manager on its own venue / another venue.
    let r = with_token(&stack, "POST", "/api/v1/venues/v2/events", json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_error(&with_token(&stack, "POST", "/api/v1/venues/v3/events", json!({})), 403, "VENUE_ACCESS_DENIED");
    let header = format!("Authorization: {}", bearer(json!({})));
    assert_error(&send(&stack, "GET", "/api/v1/venues/v1", &[&header, "X-Venue-ID: v3"]), 403, "VENUE_ACCESS_DENIED");
    assert_error(&with_token(&stack, "POST", "/api/v1/venues/v1/events", json!({"venues": null})), 403, "VENUE_ACCESS_DENIED");
    // admin skips venue scope; door-staff lacks events:create.
    assert_eq!(with_token(&stack, "POST", "/api/v1/venues/v9/events", json!({"role": "admin"})).status, 200);
    let denied = with_token(&stack, "POST", "/api/v1/venues/v1/events", json!({"role": "door-staff"}));
    assert_error(&denied, 403, "INSUFFICIENT_PERMISSIONS");
    assert!(denied.json()["message"].as_str().unwrap().contains("events:create"));
    assert_eq!(with_token(&stack, "POST", "/api/v1/tickets/validate", json!({"role": "door-staff"})).status, 200);
    // -own: a customer sees its own tickets only.
    let customer = json!({"role": "customer", "sub": "u7", "venues": null});
    assert_eq!(with_token(&stack, "GET", "/api/v1/tickets/users/u7", customer.clone()).status, 200);
    assert_error(&with_token(&stack, "GET", "/api/v1/tickets/users/u8", customer.clone()), 403, "INSUFFICIENT_PERMISSIONS");
    assert_eq!(with_token(&stack, "POST", "/api/v1/marketplace/listings", customer.clone()).status, 200);
    // The permissions claim replaces the role's defaults.
    let narrowed = json!({"role": "admin", "permissions": ["reports:view"]});
    assert_error(&with_token(&stack, "POST", "/api/v1/tickets/validate", narrowed), 403, "INSUFFICIENT_PERMISSIONS");
    assert_error(&with_token(&stack, "GET", "/api/v1/venues/v1", json!({"role": "root"})), 401, "TOKEN_UNKNOWN_ROLE");
}

#[test]
fn internal_response_headers_never_reach_the_client() {
    let stack = start();
    let auth = format!("Authorization: {}", bearer(json!({})));
    let r = send(&stack, "GET", "/api/v1/venues/v1", &[&auth, "x-echo-set-internal: 1"]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-echo-marker"), Some("1"), "the upstream did set headers");
    assert!(r.header("x-internal-secret").is_none());
    assert!(r.header("x-internal-debug").is_none());
    for name in stagedoor_filter_core::headers::response_removed_headers() {
        assert!(r.header(name).is_none(), "{name} reached the client: {:?}", r.header(name));
    }
    assert_eq!(r.header("www-authenticate"), Some("from-upstream"), "not on the response strip list");
}

#[test]
fn the_filter_reports_metrics_through_envoy() {
    let stack = start();
    // One token for all three (a token minted per request differs once the second turns,
    // which made this a miss too).
    let auth = format!("Authorization: {}", bearer(json!({"jti": "metrics"})));
    for _ in 0..3 {
        assert_eq!(send(&stack, "GET", "/api/v1/venues/v1", &[&auth]).status, 200);
    }
    assert_eq!(send(&stack, "GET", "/api/v1/venues/v1", &[]).status, 401);
    let fetch = || {
        stagedoor_e2e::stack::client()
            .get(format!("http://127.0.0.1:{}/stats/prometheus", stack.envoys[0].admin_port))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    // Counters reach Envoy on the filter's tick (at most 500 ms later).
    let flushed = stagedoor_e2e::stack::time_until(std::time::Duration::from_secs(3), || {
        fetch().lines().any(|l| l.starts_with("stagedoor_authn_ok") && l.ends_with(" 3"))
    });
    assert!(flushed.is_some(), "{}", fetch());
    let stats = fetch();
    let value = |name: &str| -> u64 {
        stats
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /stats/prometheus"))
    };
    assert_eq!(value("stagedoor_authn_ok"), 3);
    assert_eq!(value("stagedoor_authn_failed_token_missing"), 1);
    assert_eq!(value("stagedoor_token_cache_misses"), 1);
    assert_eq!(value("stagedoor_token_cache_hits"), 2);
}
