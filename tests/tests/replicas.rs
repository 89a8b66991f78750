#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Two control-plane replicas on one Redis, one Envoy on each (issue 17): the registry in
//! Redis is the one both serve, an apply through one reaches both Envoys, a stale apply is
//! refused with both versions named, history and rollback work through either, and an Envoy
//! whose replica dies fails over to the other with no 5xx and the same registry.
//!
//! Both replicas are given the same `--listen` (as replicas serving the same fleet are, on
//! different machines): the two Envoys here share the gateway port (SO_REUSEPORT), so what
//! each one routes is read from its own admin interface.

use std::time::{Duration, Instant};

use serde_json::json;
use stagedoor_e2e::fixtures::{bearer, registry_with};
use stagedoor_e2e::ports::free_port;
use stagedoor_e2e::stack::{client, time_until, wait_for};
use stagedoor_e2e::{Stack, StackOptions};
use stagedoor_proto::v1::{ApplyRegistryRequest, GetRegistryRequest, ListEnvoysRequest};

/// `stack`'s registry with a `tickets` service on the venue service's echo upstream.
fn with_tickets(stack: &Stack) -> String {
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&stack.registry()).unwrap();
    let services = doc["services"].as_sequence_mut().unwrap();
    let mut tickets = services[0].clone();
    tickets["name"] = "tickets".into();
    tickets["routes"] = serde_yaml::from_str("[{ prefix: /api/v1/tickets }]").unwrap();
    services.push(tickets);
    serde_yaml::to_string(&doc).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// The route configuration Envoy `envoy` of `stack` holds now.
fn routes(stack: &Stack, envoy: usize) -> String {
    stack.envoy_admin(envoy, "/config_dump?resource=dynamic_route_configs")
}

/// `stagedoor <args>` against `stack`'s API: (success, stdout + stderr).
fn cli(stack: &Stack, args: &[&str]) -> (bool, String) {
    let out = stack.cli().args(args).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn store_version(stack: &Stack) -> (u64, String) {
    runtime().block_on(async {
        let reply = stack.api_client().await.get_registry(GetRegistryRequest {}).await.unwrap().into_inner();
        (reply.store_version, reply.version)
    })
}

#[test]
fn two_replicas_share_the_registry_in_redis_and_an_envoy_fails_over_between_them() {
    let b_xds = free_port();
    let mut a = Stack::start(StackOptions {
        registry_yaml: registry_with(""),
        redis: true,
        xds_replicas: vec![b_xds],
        ..Default::default()
    });
    a.wait_ready();
    let redis = a.redis_url().unwrap();
    // B's own file differs: Redis, seeded by A, wins over it.
    let mut b = Stack::start(StackOptions {
        registry_yaml: registry_with("  - name: only-in-b-file\n    routes: [{ prefix: /api/v1/only-b }]\n    instances: [{ address: 127.0.0.1, port: 1 }]\n"),
        serve_args: vec![String::from("--redis"), redis],
        gateway_port: Some(a.gateway_port),
        tls_dir_from: Some(a.tls_dir.clone()),
        xds_port: Some(b_xds),
        xds_replicas: vec![a.xds_port],
        ..Default::default()
    });
    assert!(wait_for(Duration::from_secs(30), || routes(&a, 0).contains("/api/v1/venues") && routes(&b, 0).contains("/api/v1/venues")));
    let (a_version, a_hash) = store_version(&a);
    assert_eq!(store_version(&b), (a_version, a_hash.clone()), "B serves the version A seeded");
    assert_eq!(a_version, 1, "the first replica seeds an empty Redis as version 1");
    assert!(!routes(&b, 0).contains("/api/v1/only-b"), "B's file is only a seed: Redis's registry wins");

    // An apply through A reaches both Envoys.
    let proposed = a.dir.join("proposed.yaml");
    std::fs::write(&proposed, with_tickets(&a)).unwrap();
    let started = Instant::now();
    let (ok, out) = cli(&a, &["apply", "-f", &proposed.display().to_string()]);
    assert!(ok, "{out}");
    assert!(out.contains("(version 2 in redis)"), "{out}");
    let both = time_until(Duration::from_secs(1), || routes(&a, 0).contains("/api/v1/tickets") && routes(&b, 0).contains("/api/v1/tickets"));
    let took = both.unwrap_or_else(|| panic!("both Envoys must route the new version within 1 s of the apply; A's log:\n{}", a.control_plane_log()));
    eprintln!(
        "apply on replica A -> both Envoys hold the new routes: {} ms after the CLI returned, {} ms after it started",
        took.as_millis(),
        started.elapsed().as_millis()
    );
    let venue = json!({"role": "admin"});
    assert!(wait_for(Duration::from_secs(5), || {
        client().get(a.url("/api/v1/tickets/1")).header("authorization", bearer(venue.clone())).send().map(|r| r.status() == 200).unwrap_or(false)
    }));

    // An apply on B based on version 1 (read before A's apply) is refused, naming both.
    let stale = runtime().block_on(async {
        let request = ApplyRegistryRequest { yaml: b.registry(), dry_run: false, base_version: Some(1) };
        b.api_client().await.apply_registry(request).await.unwrap_err()
    });
    assert_eq!(stale.code(), tonic::Code::FailedPrecondition, "{stale:?}");
    assert!(stale.message().contains("at version 2") && stale.message().contains("based on version 1"), "{}", stale.message());
    assert!(!routes(&b, 0).contains("/api/v1/only-b"), "the refused apply changed nothing");

    // History lists both versions, through either replica.
    let (ok, history) = cli(&b, &["history"]);
    assert!(ok, "{history}");
    let lines: Vec<&str> = history.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "{history}");
    assert!(lines[0].trim_start().starts_with("2 ") && lines[0].contains("operator"), "{history}");
    assert!(lines[1].trim_start().starts_with("1 ") && lines[1].contains("seed:") && lines[1].contains(&a_hash), "{history}");

    // Rollback through B to version 1: a version 3 with 1's content, on both Envoys.
    let (ok, out) = cli(&b, &["rollback", "--to", "1"]);
    assert!(ok && out.contains("version 3 in redis"), "{out}");
    assert!(wait_for(Duration::from_secs(5), || !routes(&a, 0).contains("/api/v1/tickets") && !routes(&b, 0).contains("/api/v1/tickets")));
    assert_eq!(a.registry(), b.registry(), "each replica's file mirrors the version it serves");
    assert_eq!(store_version(&a), (3, a_hash.clone()));
    assert_eq!(store_version(&b), (3, a_hash.clone()));
    let (ok, out) = cli(&a, &["rollback", "--to", "99"]);
    assert!(!ok && out.contains("NotFound") && out.contains("version 99 is not in the registry's history (kept: 1..3)"), "{out}");

    // Failover: B's Envoy goes, so the gateway port is A's Envoy's alone; then replica A
    // dies under a bounded load on it.
    let mut b_envoy = b.envoys.remove(0);
    b_envoy.child.kill().unwrap();
    b_envoy.child.wait().unwrap();
    let a_node = a.envoys[0].node_id.clone();
    let http = client();
    let token = bearer(json!({"role": "admin"}));
    let connected_to_b = || {
        runtime().block_on(async {
            let reply = b.api_client().await.list_envoys(ListEnvoysRequest {}).await.unwrap().into_inner();
            reply.envoys.iter().any(|e| e.node_id == a_node && e.types.iter().any(|t| !t.acked_version.is_empty()))
        })
    };
    let (mut ok_count, mut failures) = (0, Vec::new());
    let (mut a_stopped, mut failed_over) = (None::<Instant>, None);
    let load_started = Instant::now();
    for i in 0..200 {
        if i == 50 {
            a.stop_control_plane();
            a_stopped = Some(Instant::now());
            eprintln!("replica A stopped after {} ms of load", load_started.elapsed().as_millis());
        }
        if let (Some(stopped), None) = (a_stopped, failed_over) {
            if connected_to_b() {
                failed_over = Some(stopped.elapsed());
                eprintln!("A's Envoy ACKed replica B's config {} ms after replica A stopped", stopped.elapsed().as_millis());
            }
        }
        match http.get(a.url("/api/v1/venues/1")).header("authorization", &token).send() {
            Ok(r) if r.status().is_success() => ok_count += 1,
            Ok(r) => failures.push(format!("request {i}: {}", r.status())),
            Err(e) => failures.push(format!("request {i}: {e}")),
        }
        std::thread::sleep(Duration::from_millis(20));
        if load_started.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    eprintln!("load: {ok_count} ok, {} failed over {} ms", failures.len(), load_started.elapsed().as_millis());
    assert!(failures.is_empty(), "no 5xx and no failed request while Envoy fails over: {failures:?}");
    assert_eq!(ok_count, 200);
    if failed_over.is_none() {
        assert!(time_until(Duration::from_secs(10), connected_to_b).is_some(), "A's Envoy must reconnect to replica B (its bootstrap lists both)");
    }
    let after = routes(&a, 0);
    assert!(after.contains("/api/v1/venues") && !after.contains("/api/v1/tickets") && !after.contains("/api/v1/only-b"), "the same registry (version 3) after the failover");
    let status = b.control_plane_status();
    assert_eq!(status["registry_store"]["served_version"], 3, "{status}");
    assert_eq!(status["registry_version"], a_hash.as_str());

    // Replica A comes back: it serves Redis's version 3, and A's Envoy stays on B (no flap).
    let stream_on_b = || {
        runtime().block_on(async {
            let reply = b.api_client().await.list_envoys(ListEnvoysRequest {}).await.unwrap().into_inner();
            reply.envoys.iter().find(|e| e.node_id == a_node).map(|e| e.stream_id)
        })
    };
    let before = stream_on_b();
    assert!(before.is_some());
    a.start_control_plane();
    assert_eq!(store_version(&a), (3, a_hash.clone()), "a restarted replica serves Redis's version");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(stream_on_b(), before, "the Envoy's stream stays on replica B when A returns");

    // A version this replica cannot serve (written straight into Redis here, as a replica
    // with another machine's secrets might): B keeps version 3 and says why in /status.
    let bad = json!({"version": 4, "hash": "bad", "yaml": "services:\n  - name: Not A Name\n", "applied_by": "test", "applied_at_unix_ms": 1});
    a.redis_cli(&["SET", "stagedoor:{registry}:version", "4"]);
    a.redis_cli(&["LPUSH", "stagedoor:{registry}:history", &bad.to_string()]);
    a.redis_cli(&["PUBLISH", "stagedoor:registry", "4"]);
    let refused = || b.control_plane_status()["registry_store"]["error"].as_str().unwrap_or_default().contains("version 4");
    assert!(wait_for(Duration::from_secs(10), refused), "{}", b.control_plane_status());
    let status = b.control_plane_status();
    assert_eq!(status["registry_store"]["served_version"], 3, "{status}");
    assert_eq!(status["registry_store"]["latest_version"], 4, "{status}");
    assert_eq!(status["registry_version"], a_hash.as_str(), "the last good registry keeps serving");
    eprintln!("refused here: {}", status["registry_store"]["error"]);
}
