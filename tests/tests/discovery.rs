#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Live instances from a real Redis, and a control plane that can go away and come back
//! while traffic flows.

use std::process::Command;
use std::time::{Duration, Instant};

use stagedoor_e2e::fixtures::registry_with;
use stagedoor_e2e::raw;
use stagedoor_e2e::stack::{echo_count_at, stagedoor_bin, time_until};
use stagedoor_e2e::{Stack, StackOptions};

fn registry() -> String {
    registry_with(
        r#"  - name: live
    routes: [{ prefix: /api/v1/live }]
    traffic:
      retries: { attempts: 1, base_interval_ms: 10, max_interval_ms: 20 }
      health_check: { enabled: false }
"#,
    )
}

fn start() -> Stack {
    let stack = Stack::start(StackOptions { registry_yaml: registry(), redis: true, ..Default::default() });
    stack.wait_ready();
    stack
}

fn stagedoor(stack: &Stack, args: &[&str]) {
    let out = Command::new(stagedoor_bin())
        .args(args)
        .args(["--redis", &stack.redis_url().unwrap()])
        .env("STAGEDOOR_REGISTRY", &stack.registry_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "stagedoor {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_instance_registered_in_redis_gets_traffic_and_leaves_when_deregistered_or_expired() {
    let mut stack = start();
    assert_eq!(stack.get_as_admin("/api/v1/live/1").0, 503, "no instance yet");
    let port = stack.start_echo("live");
    let p = port.to_string();
    stagedoor(&stack, &["register", "--service", "live", "--address", "127.0.0.1", "--port", &p, "--ttl", "60s"]);
    let took = time_until(Duration::from_secs(3), || stack.get_as_admin("/api/v1/live/1").0 == 200);
    eprintln!("redis register -> routed in {took:?}");
    assert!(took.is_some_and(|t| t < Duration::from_secs(1)), "{took:?}");
    assert_eq!(stack.get_as_admin("/api/v1/live/1").1["service"], "live");
    let status = stack.control_plane_status();
    assert_eq!(status["discovery"]["connected"], true, "{status}");

    stagedoor(&stack, &["deregister", "--service", "live", "--address", "127.0.0.1", "--port", &p]);
    let took = time_until(Duration::from_secs(3), || stack.get_as_admin("/api/v1/live/1").0 == 503);
    eprintln!("redis deregister -> gone in {took:?}");
    assert!(took.is_some_and(|t| t < Duration::from_secs(1)), "{took:?}");

    // An instance that stops heartbeating leaves when its key expires.
    stagedoor(&stack, &["register", "--service", "live", "--address", "127.0.0.1", "--port", &p, "--ttl", "1s"]);
    assert!(time_until(Duration::from_secs(3), || stack.get_as_admin("/api/v1/live/1").0 == 200).is_some());
    let took = time_until(Duration::from_secs(5), || stack.get_as_admin("/api/v1/live/1").0 == 503);
    eprintln!("redis ttl 1 s -> gone after {took:?}");
    assert!(took.is_some(), "an expired instance leaves EDS");
}

/// SotW EDS responses carry only the assignments that changed (xds/sotw.rs): Envoy must
/// read a missing one as unchanged. venue's EDS subscription counts each update it is given
/// (`update_success`): it stays where it was while live's instance comes and goes, and
/// venue keeps its instance and its traffic. (With every assignment in every response it
/// grows by one per change.)
#[test]
fn an_instance_change_sends_only_that_services_endpoints_and_envoy_keeps_the_others() {
    // The bootstrap's stats_matcher keeps no svc_ cluster stats: add venue's (merged in).
    let venue_stats = "stats_config: { stats_matcher: { inclusion_list: { patterns: [{ prefix: 'cluster.svc_venue.' }] } } }";
    let envoy_args = vec!["--config-yaml".to_owned(), venue_stats.to_owned()];
    let mut stack = Stack::start(StackOptions { registry_yaml: registry(), redis: true, envoy_args, ..Default::default() });
    stack.wait_ready();
    assert_eq!(stack.get_as_admin("/api/v1/venues/1").0, 200, "venue's static instance");
    let venue_updates = |stack: &Stack| stack.envoy_stat(0, "cluster.svc_venue.update_success");
    let before = venue_updates(&stack);
    assert!(before.is_some_and(|n| n >= 1), "venue's assignment arrived once: {before:?}");
    let port = stack.start_echo("live");
    let p = port.to_string();
    stagedoor(&stack, &["register", "--service", "live", "--address", "127.0.0.1", "--port", &p, "--ttl", "60s"]);
    assert!(time_until(Duration::from_secs(3), || stack.get_as_admin("/api/v1/live/1").0 == 200).is_some(), "live routed");
    assert_eq!(venue_updates(&stack), before, "the EDS response that added live's instance did not carry venue's");
    assert_eq!(stack.envoy_stat(0, "cluster.svc_venue.membership_total"), Some(1), "and Envoy kept venue's instance");
    assert_eq!(stack.get_as_admin("/api/v1/venues/1").0, 200);

    stagedoor(&stack, &["deregister", "--service", "live", "--address", "127.0.0.1", "--port", &p]);
    assert!(time_until(Duration::from_secs(3), || stack.get_as_admin("/api/v1/live/1").0 == 503).is_some(), "live's instance gone");
    assert_eq!(venue_updates(&stack), before, "nor did the one that removed it");
    assert_eq!(stack.envoy_stat(0, "cluster.svc_venue.membership_total"), Some(1));
    assert_eq!(stack.get_as_admin("/api/v1/venues/1").0, 200, "venue still served");
}

#[test]
fn redis_going_away_keeps_the_last_instances_and_the_control_plane_catches_up() {
    let mut stack = start();
    let port = stack.start_echo("live");
    let p = port.to_string();
    stagedoor(&stack, &["register", "--service", "live", "--address", "127.0.0.1", "--port", &p, "--ttl", "60s"]);
    assert!(time_until(Duration::from_secs(3), || stack.get_as_admin("/api/v1/live/1").0 == 200).is_some());

    stack.stop_redis();
    let noticed = time_until(Duration::from_secs(5), || stack.control_plane_status()["discovery"]["connected"] == false);
    assert!(noticed.is_some(), "status shows Redis down");
    for _ in 0..10 {
        assert_eq!(stack.get_as_admin("/api/v1/live/1").0, 200, "the last known instances keep serving");
    }
    assert!(stack.control_plane_status()["discovery"]["errors"].as_u64().unwrap() >= 1);

    // Redis comes back empty (no persistence): the instance re-registers, as a heartbeat would.
    stack.start_redis();
    stagedoor(&stack, &["register", "--service", "live", "--address", "127.0.0.1", "--port", &p, "--ttl", "60s"]);
    let caught_up = time_until(Duration::from_secs(10), || stack.control_plane_status()["discovery"]["connected"] == true);
    assert!(caught_up.is_some());
    // The follower may rescan the empty Redis before the registration lands; the
    // registration's announcement brings the instance back right after.
    let serving = time_until(Duration::from_secs(5), || stack.get_as_admin("/api/v1/live/1").0 == 200);
    eprintln!("serving again {serving:?} after the follower reconnected");
    assert!(serving.is_some());
}

#[test]
fn envoy_keeps_serving_while_the_control_plane_restarts_and_resyncs_after() {
    let mut stack = start();
    assert_eq!(stack.get_as_admin("/api/v1/venues/1").0, 200);
    stack.stop_control_plane();
    for _ in 0..20 {
        assert_eq!(stack.get_as_admin("/api/v1/venues/1").0, 200, "Envoy serves its last config");
    }
    stack.start_control_plane();
    let reconnected = time_until(Duration::from_secs(20), || {
        stack.control_plane_status()["envoys"].as_array().is_some_and(|e| !e.is_empty())
    });
    assert!(reconnected.is_some(), "Envoy re-syncs with the new control plane");
    for _ in 0..20 {
        assert_eq!(stack.get_as_admin("/api/v1/venues/1").0, 200);
    }
    // And the new control plane's changes reach it.
    let port = stack.start_echo("live");
    stagedoor(&stack, &["register", "--service", "live", "--address", "127.0.0.1", "--port", &port.to_string()]);
    assert!(time_until(Duration::from_secs(3), || stack.get_as_admin("/api/v1/live/1").0 == 200).is_some());
}

#[test]
fn instances_can_be_registered_over_the_grpc_api() {
    use stagedoor_proto::v1::{DeregisterInstanceRequest, RegisterInstanceRequest};
    let mut stack = start();
    let port = stack.start_echo("live");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client = stack.api_client().await;
        let bad = RegisterInstanceRequest { service: "live".into(), address: "not-an-ip".into(), port: 1, ttl_seconds: 0 };
        let e = client.register_instance(bad).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        let good = RegisterInstanceRequest { service: "live".into(), address: "127.0.0.1".into(), port: u32::from(port), ttl_seconds: 60 };
        client.register_instance(good).await.unwrap();
    });
    assert!(time_until(Duration::from_secs(3), || stack.get_as_admin("/api/v1/live/1").0 == 200).is_some());
    runtime.block_on(async {
        let mut client = stack.api_client().await;
        let req = DeregisterInstanceRequest { service: "live".into(), address: "127.0.0.1".into(), port: u32::from(port) };
        client.deregister_instance(req).await.unwrap();
    });
    assert!(time_until(Duration::from_secs(3), || stack.get_as_admin("/api/v1/live/1").0 == 503).is_some());
}

/// One static instance and room for a live one, with Envoy's active health checks on (the
/// default), which an instance that was removed from EDS keeps passing.
fn health_checked_registry() -> String {
    registry_with(
        r#"  - name: checked
    routes: [{ prefix: /api/v1/checked }]
    instances: [{ address: 127.0.0.1, port: 1 }]
    request_headers: { allow: ["x-echo-*"] }
    traffic:
      retries: { attempts: 1, base_interval_ms: 10, max_interval_ms: 20 }
"#,
    )
}

#[test]
fn no_request_reaches_a_deregistered_or_expired_instance_a_second_after_its_removal() {
    let mut stack = Stack::start(StackOptions { registry_yaml: health_checked_registry(), redis: true, ..Default::default() });
    stack.wait_ready();
    let live = stack.start_echo("checked");
    let p = live.to_string();
    let auth = format!("Authorization: {}", stagedoor_e2e::fixtures::bearer(serde_json::json!({"role": "admin"})));
    let send = |key: &str| raw::request(stack.gateway_port, "GET", "/api/v1/checked/1", &[&auth, &format!("x-echo-key: {key}")], "").status;
    let register = |ttl: &str| {
        stagedoor(&stack, &["register", "--service", "checked", "--address", "127.0.0.1", "--port", &p, "--ttl", ttl]);
        Instant::now()
    };
    let routed_to_live = |key: &str| time_until(Duration::from_secs(3), || send(key) == 200 && echo_count_at(live, key) > 0);

    register("60s");
    assert!(routed_to_live("warm").is_some(), "the registered instance gets traffic");
    stagedoor(&stack, &["deregister", "--service", "checked", "--address", "127.0.0.1", "--port", &p]);
    std::thread::sleep(Duration::from_secs(1));
    let statuses: Vec<u16> = (0..20).map(|_| send("after-deregister")).collect();
    let reached = echo_count_at(live, "after-deregister");
    eprintln!("1 s after deregister: {reached} of 20 requests reached the removed instance");
    assert!(statuses.iter().all(|s| *s == 200), "the static instance serves: {statuses:?}");
    assert_eq!(reached, 0, "a deregistered instance gets no traffic 1 s after its removal");

    // Expiry: the key lapses at most TTL after `register` returned.
    let ttl = Duration::from_secs(3);
    let registered = register("3s");
    let warmed = routed_to_live("warm-again");
    let since_register = registered.elapsed();
    eprintln!("re-registered and routed {} ms after register (TTL {} ms)", since_register.as_millis(), ttl.as_millis());
    assert!(warmed.is_some() && since_register < ttl, "re-registered and routed before the TTL ran out");
    std::thread::sleep((registered + ttl + Duration::from_secs(1)).saturating_duration_since(Instant::now()));
    let statuses: Vec<u16> = (0..20).map(|_| send("after-expiry")).collect();
    let reached = echo_count_at(live, "after-expiry");
    eprintln!("1 s after the TTL ran out: {reached} of 20 requests reached the expired instance");
    assert!(statuses.iter().all(|s| *s == 200), "the static instance serves: {statuses:?}");
    assert_eq!(reached, 0, "an expired instance gets no traffic 1 s after its removal");
}

/// A burst of notifications (a fleet registering, many keys expiring together) costs one
/// scan of the instance keys, not one per notification.
#[test]
fn a_burst_of_instance_notifications_makes_one_rescan() {
    let stack = start();
    let rescans = || stack.control_plane_status()["discovery"]["rescans"].as_u64().unwrap_or(0);
    let settled = time_until(Duration::from_secs(5), || rescans() > 0);
    assert!(settled.is_some(), "{}", stack.control_plane_status());
    let before = rescans();
    // 200 announcements in one server-side loop: they arrive within a millisecond or two.
    let script = "for i = 1, 200 do redis.call('PUBLISH', KEYS[1], 'live') end return 200";
    assert_eq!(stack.redis_cli(&["EVAL", script, "1", "stagedoor:instances"]), "200");
    std::thread::sleep(Duration::from_millis(500));
    let after = rescans();
    eprintln!("200 notifications -> {} rescans", after - before);
    assert!(after > before, "the burst was seen");
    assert!(after - before <= 5, "{} rescans for one burst", after - before);
}
