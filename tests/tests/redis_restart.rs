#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Redis restarts lose no revocation: the ones accepted while Redis was away, and the ones
//! it lost with its restart (the test's redis-server has no persistence, so it comes back
//! empty), are written back from the control plane's memory and outlive its restart.

use std::time::{Duration, Instant};

use serde_json::json;
use stagedoor_e2e::fixtures::{bearer, registry_with};
use stagedoor_e2e::raw;
use stagedoor_e2e::stack::{client, time_until};
use stagedoor_e2e::{Stack, StackOptions};

fn start() -> Stack {
    let stack = Stack::start(StackOptions { registry_yaml: registry_with(""), redis: true, ..Default::default() });
    stack.wait_ready();
    stack
}

/// `stagedoor token revoke --jti <jti>`: its stdout; the command must succeed.
fn revoke(stack: &Stack, jti: &str) -> String {
    let out = stack.cli().args(["token", "revoke", "--jti", jti]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "revoke {jti} failed: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn refused(stack: &Stack, jti: &str) -> bool {
    let auth = format!("Authorization: {}", bearer(json!({"jti": jti, "role": "admin"})));
    raw::request(stack.gateway_port, "GET", "/api/v1/venues/1", &[&auth], "").json()["code"] == "TOKEN_REVOKED"
}

fn revoked_keys(stack: &Stack) -> Vec<String> {
    let mut keys: Vec<String> =
        stack.redis_cli(&["KEYS", "stagedoor:revoked:*"]).lines().filter(|l| !l.is_empty()).map(str::to_owned).collect();
    keys.sort();
    keys
}

#[test]
fn revocations_outlive_a_redis_restart_and_then_a_control_plane_restart() {
    let mut stack = start();
    let before = revoke(&stack, "before-outage");
    assert!(before.contains("stored in redis"), "{before}");
    assert!(time_until(Duration::from_secs(3), || refused(&stack, "before-outage")).is_some());

    stack.stop_redis();
    let during = revoke(&stack, "during-outage");
    eprintln!("revoke with redis down: {during}");
    assert!(during.contains("queued: redis unavailable"), "{during}");
    assert!(time_until(Duration::from_secs(3), || refused(&stack, "during-outage")).is_some(), "in force from memory");
    let both_pending = time_until(Duration::from_secs(3), || stack.control_plane_status()["revocation"]["pending_write_back"] == 2);
    assert!(both_pending.is_some(), "both wait for Redis: {}", stack.control_plane_status()["revocation"]);
    let metrics = client().get(format!("http://127.0.0.1:{}/metrics", stack.metrics_port)).send().unwrap().text().unwrap();
    assert!(metrics.contains("\nstagedoor_revocations_pending_write_back 2\n"), "{metrics}");

    // Back empty: both are written back, with their remaining TTL.
    stack.start_redis();
    let restarted = Instant::now();
    let expected = ["stagedoor:revoked:before-outage", "stagedoor:revoked:during-outage"];
    let written_back = time_until(Duration::from_secs(10), || revoked_keys(&stack) == expected);
    eprintln!("redis restarted empty -> both revocations written back after {:?}", written_back.map(|_| restarted.elapsed()));
    assert!(written_back.is_some(), "redis holds {:?}", revoked_keys(&stack));
    for key in expected {
        let ttl: i64 = stack.redis_cli(&["TTL", key]).parse().unwrap();
        assert!(ttl > 23 * 3600 && ttl <= 24 * 3600, "{key}: TTL {ttl} s, the rest of the default 24 h");
    }
    let synced = time_until(Duration::from_secs(5), || stack.control_plane_status()["revocation"]["pending_write_back"] == 0);
    assert!(synced.is_some(), "{}", stack.control_plane_status()["revocation"]);

    // A new control plane knows only what Redis holds.
    stack.stop_control_plane();
    stack.start_control_plane();
    let loaded = time_until(Duration::from_secs(10), || stack.control_plane_status()["revoked_tokens"] == 2);
    assert!(loaded.is_some(), "{}", stack.control_plane_status());
    for jti in ["before-outage", "during-outage"] {
        let still = time_until(Duration::from_secs(5), || refused(&stack, jti));
        assert!(still.is_some(), "{jti} is accepted after the restarts");
    }
    assert_eq!(revoked_keys(&stack), expected);
}

#[test]
fn a_revocation_in_redis_is_never_shortened() {
    use stagedoor_proto::v1::RevokeTokenRequest;
    let stack = start();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ttl = || stack.redis_cli(&["TTL", "stagedoor:revoked:long-lived"]).parse::<i64>().unwrap();
    runtime.block_on(async {
        let mut client = stack.api_client().await;
        let long = RevokeTokenRequest { jti: "long-lived".into(), expires_at_unix: now + 3_600, ..Default::default() };
        let reply = client.revoke_token(long).await.unwrap().into_inner();
        let first = ttl();
        assert!(first > 3_500, "TTL {first}");
        let short = RevokeTokenRequest { jti: "long-lived".into(), expires_at_unix: now + 60, ..Default::default() };
        client.revoke_token(short).await.unwrap();
        let after = ttl();
        eprintln!("TTL after a revoke for 1 h: {first} s; after one for 60 s: {after} s");
        assert!(after > 3_500, "the later expiry was shortened to {after} s");
        assert_eq!(reply.persistence(), stagedoor_proto::v1::Persistence::Stored, "{reply:?}");
    });
}

