#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Sentinel failover under load (issue 17): a primary, two replicas and three Sentinels on
//! loopback, two control planes on `--redis redis+sentinel://…`, an Envoy on each. The
//! primary is SIGKILLed while requests flow; after the Sentinels promote a replica:
//! - no registry version is lost: every version an apply acknowledged before the kill is
//!   in the new primary's history with its content hash, and the next apply gets the next
//!   number (an acknowledged apply waited for a replica, `WAIT 1`, and Sentinel promotes
//!   the replica with the most data);
//! - an apply through either control plane succeeds and reaches both Envoys;
//! - a revocation made before and one made after the failover are enforced by both Envoys;
//! - an instance registered after the failover is routed by both;
//! - the request loop saw no failed request (its route needs no Redis).
//!
//! Each stack has its own gateway port, so what each Envoy does is asked of it directly.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stagedoor_e2e::fixtures::{bearer, registry_with};
use stagedoor_e2e::raw;
use stagedoor_e2e::sentinel::SentinelSet;
use stagedoor_e2e::stack::{stagedoor_bin, time_until, wait_for};
use stagedoor_e2e::{Stack, StackOptions};

const LIVE_SERVICE: &str = "  - name: live\n    routes: [{ prefix: /api/v1/live }]\n    traffic:\n      health_check: { enabled: false }\n";

fn registry(extra_prefix: Option<&str>) -> String {
    let extra = extra_prefix
        .map(|p| format!("  - name: extra{n}\n    routes: [{{ prefix: {p} }}]\n    instances: [{{ address: 127.0.0.2, port: 9 }}]\n", n = p.len()))
        .unwrap_or_default();
    registry_with(&format!("{LIVE_SERVICE}{extra}"))
}

/// `stagedoor <args>` against `stack`'s API: (success, stdout + stderr).
fn cli(stack: &Stack, args: &[&str]) -> (bool, String) {
    let out = stack.cli().args(args).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Applies the registry with one more route through `stack`; the version Redis gave it.
fn apply(stack: &Stack, prefix: &str) -> Result<u64, String> {
    let file = stack.dir.join(format!("apply{}.yaml", prefix.replace('/', "_")));
    // The venue service's instance is the stack's echo: take it from the served file.
    let served: serde_yaml::Value = serde_yaml::from_str(&stack.registry()).unwrap();
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&registry(Some(prefix))).unwrap();
    doc["services"][0]["instances"] = served["services"][0]["instances"].clone();
    std::fs::write(&file, serde_yaml::to_string(&doc).unwrap()).unwrap();
    let (ok, out) = cli(stack, &["apply", "-f", &file.display().to_string()]);
    if !ok {
        return Err(out);
    }
    let version = out.split("(version ").nth(1).and_then(|rest| rest.split(' ').next()).and_then(|v| v.parse().ok());
    version.ok_or(out)
}

fn routes(stack: &Stack) -> String {
    stack.envoy_admin(0, "/config_dump?resource=dynamic_route_configs")
}

fn status_of(stack: &Stack, path: &str, token: &str) -> u16 {
    raw::request(stack.gateway_port, "GET", path, &[&format!("Authorization: {token}")], "").status
}

/// The (version, hash) pairs of the registry history the data node on `port` holds.
fn history_on(set: &SentinelSet, port: u16) -> Vec<(u64, String)> {
    let mut versions: Vec<(u64, String)> = set
        .cli(port, &["LRANGE", "stagedoor:{registry}:history", "0", "-1"])
        .iter()
        .map(|doc| {
            let d: serde_json::Value = serde_json::from_str(doc).unwrap();
            (d["version"].as_u64().unwrap(), d["hash"].as_str().unwrap().to_owned())
        })
        .collect();
    versions.reverse();
    versions
}

fn store_history(stack: &Stack) -> Vec<(u64, String)> {
    let (ok, out) = cli(stack, &["history"]);
    assert!(ok, "{out}");
    let mut versions: Vec<(u64, String)> = out
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some((words.next()?.parse().ok()?, words.next()?.to_owned()))
        })
        .collect();
    versions.reverse();
    versions
}

#[test]
fn the_control_planes_follow_a_sentinel_failover_without_losing_a_version_or_a_revocation() {
    let mut set = SentinelSet::start("failover");
    let url = set.url();
    let old_primary = set.primary_port().unwrap();
    let options = || StackOptions { registry_yaml: registry(None), serve_args: vec![String::from("--redis"), url.clone()], ..Default::default() };
    let mut a = Stack::start(options());
    a.wait_ready();
    let b = Stack::start(options());
    b.wait_ready();
    let admin = bearer(json!({"role": "admin"}));
    assert!(wait_for(Duration::from_secs(20), || status_of(&a, "/api/v1/venues/1", &admin) == 200 && status_of(&b, "/api/v1/venues/1", &admin) == 200));

    // Before the failover: two applies (versions acknowledged after WAIT 1) and a revocation.
    let mut acknowledged = Vec::new();
    for (stack, prefix) in [(&a, "/api/v1/before-one"), (&b, "/api/v1/before-two")] {
        let version = apply(stack, prefix).unwrap_or_else(|out| panic!("apply before the failover: {out}"));
        acknowledged.push(version);
    }
    let before_kill = store_history(&a);
    eprintln!("versions before the kill: {before_kill:?}");
    let revoked_before = bearer(json!({"jti": "revoked-before", "role": "admin"}));
    let (ok, out) = cli(&a, &["token", "revoke", "--jti", "revoked-before"]);
    assert!(ok && out.contains("stored in redis"), "{out}");
    for stack in [&a, &b] {
        assert!(wait_for(Duration::from_secs(5), || routes(stack).contains("/api/v1/before-two")), "{}", stack.control_plane_log());
        assert!(wait_for(Duration::from_secs(5), || status_of(stack, "/api/v1/venues/1", &revoked_before) == 401));
    }

    // Load on both Envoys (bounded: 150 s or 10,000 requests), then the primary is killed.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, ports, token) = (stop.clone(), [a.gateway_port, b.gateway_port], admin.clone());
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let started = Instant::now();
            for i in 0..10_000 {
                if stop.load(Ordering::Relaxed) || started.elapsed() > Duration::from_secs(150) {
                    break;
                }
                let port = ports[i % 2];
                let status = raw::request(port, "GET", "/api/v1/venues/1", &[&format!("Authorization: {token}")], "").status;
                if status == 200 {
                    ok += 1;
                } else {
                    failed.push(format!("request {i} on {port}: {status}"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    set.kill(old_primary);
    let killed = Instant::now();
    let new_primary = set.wait_failover(old_primary, Duration::from_secs(60)).unwrap_or_else(|| panic!("no failover:\n{}", set.sentinel_logs()));
    let promoted_at = Instant::now();
    eprintln!("primary {old_primary} killed; sentinels promoted {new_primary} after {} ms", killed.elapsed().as_millis());

    // No version lost: what was acknowledged is on the new primary, with the same hashes.
    let promoted = history_on(&set, new_primary);
    for entry in &before_kill {
        assert!(promoted.contains(entry), "acknowledged version {entry:?} lost in the failover; the new primary holds {promoted:?}");
    }

    // An apply through each control plane succeeds (retried while the new primary has no
    // replica for min-replicas-to-write yet) and reaches both Envoys.
    let mut after = Vec::new();
    for (stack, prefix) in [(&a, "/api/v1/after-one"), (&b, "/api/v1/after-two")] {
        let (mut attempts, mut first, mut last) = (0, None::<String>, String::new());
        let took = time_until(Duration::from_secs(60), || {
            attempts += 1;
            match apply(stack, prefix) {
                Ok(version) => {
                    after.push(version);
                    true
                }
                Err(out) => {
                    first.get_or_insert_with(|| out.clone());
                    last = out;
                    std::thread::sleep(Duration::from_millis(200));
                    false
                }
            }
        });
        assert!(took.is_some(), "apply after the failover never succeeded ({attempts} attempts); last: {last}\n{}", stack.control_plane_log());
        eprintln!("apply {prefix} after the failover: {attempts} attempt(s), {} ms after the kill; first refusal: {first:?}", killed.elapsed().as_millis());
        if after.len() == 1 {
            // Issue 17's measure: the promotion to both control planes serving the version
            // the first apply after it wrote (each follower back on the new primary).
            let newest = after[0];
            let served = |stack: &Stack| stack.control_plane_status()["registry_store"]["served_version"] == newest;
            let both = time_until(Duration::from_secs(30), || served(&a) && served(&b));
            assert!(both.is_some(), "version {newest} not served by both control planes within 30 s:\n{}", b.control_plane_log());
            eprintln!("both control planes serve version {newest} {} ms after the promotion ({} ms after the kill)", promoted_at.elapsed().as_millis(), killed.elapsed().as_millis());
        }
    }
    assert_eq!(after, [acknowledged[1] + 1, acknowledged[1] + 2], "the numbering goes on from the last acknowledged version");
    for stack in [&a, &b] {
        let both = time_until(Duration::from_secs(5), || routes(stack).contains("/api/v1/after-two"));
        assert!(both.is_some(), "{}", stack.control_plane_log());
    }
    let final_history = store_history(&b);
    assert_eq!(final_history.iter().map(|(v, _)| *v).collect::<Vec<_>>(), (1..=acknowledged[1] + 2).collect::<Vec<_>>(), "{final_history:?}");

    // A revocation after the failover; both, before and after, enforced by both Envoys.
    let revoked_after = bearer(json!({"jti": "revoked-after", "role": "admin"}));
    let stored = time_until(Duration::from_secs(20), || {
        let (ok, out) = cli(&b, &["token", "revoke", "--jti", "revoked-after"]);
        ok && out.contains("stored in redis")
    });
    assert!(stored.is_some(), "the revocation after the failover was never stored:\n{}", b.control_plane_log());
    for stack in [&a, &b] {
        for (token, name) in [(&revoked_before, "before"), (&revoked_after, "after")] {
            let refused = wait_for(Duration::from_secs(5), || status_of(stack, "/api/v1/venues/1", token) == 401);
            assert!(refused, "the revocation made {name} the failover is not enforced by the Envoy on {}", stack.gateway_port);
        }
    }
    let on_primary = set.cli(new_primary, &["EXISTS", "stagedoor:revoked:revoked-before", "stagedoor:revoked:revoked-after"]);
    assert_eq!(on_primary, ["2"], "both revocations are in the new primary");

    // A live instance registered after the failover is routed by both Envoys.
    let port = a.start_echo("live");
    let out = Command::new(stagedoor_bin())
        .args(["register", "--service", "live", "--address", "127.0.0.1", "--port", &port.to_string(), "--ttl", "60s", "--redis", &url])
        .env("STAGEDOOR_REGISTRY", &a.registry_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "register: {}", String::from_utf8_lossy(&out.stderr));
    for stack in [&a, &b] {
        let routed = time_until(Duration::from_secs(10), || status_of(stack, "/api/v1/live/1", &admin) == 200);
        assert!(routed.is_some(), "the instance registered after the failover is not routed by the Envoy on {}:\n{}", stack.gateway_port, stack.control_plane_log());
    }

    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = load.join().unwrap();
    eprintln!("load across the failover: {ok} ok, {} failed ({} ms after the kill)", failed.len(), killed.elapsed().as_millis());
    assert!(failed.is_empty(), "no request may fail across the failover: {failed:?}");
    assert!(ok > 100, "the load ran ({ok} requests)");
    for stack in [&a, &b] {
        let status = stack.control_plane_status();
        assert_eq!(status["registry_store"]["connected"], true, "{status}");
        assert_eq!(status["registry_store"]["served_version"], acknowledged[1] + 2, "{status}");
        assert_eq!(status["discovery"]["connected"], true, "{status}");
    }
    a.stop_control_plane();
}

/// A bad Redis URL stops `serve` and `register` at start, naming the part at fault; a
/// Cluster URL is refused with the reason, not accepted and then half working.
#[test]
fn a_bad_redis_url_stops_the_command_naming_the_part() {
    let cases = [
        (vec!["serve", "--redis", "redis+sentinel://127.0.0.1:26379,127.0.0.1:x/stagedoor"], "sentinel \"127.0.0.1:x\": the port \"x\" is not a number"),
        (vec!["serve", "--redis", "redis+sentinel://u:hunter2@127.0.0.1:26379"], "the master name (the path"),
        (vec!["serve", "--ratelimit-redis", "redis+cluster://127.0.0.1:7000"], "Redis Cluster is not supported"),
        (
            vec!["register", "--service", "venue", "--address", "127.0.0.1", "--port", "1", "--redis", "redis://127.0.0.1/?db=2"],
            "unknown parameter \"db\"",
        ),
    ];
    for (args, expected) in cases {
        let out = Command::new(stagedoor_bin()).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must fail");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "a password reached the message: {stderr}");
    }
}
