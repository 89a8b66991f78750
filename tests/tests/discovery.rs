#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Live instances from a real Redis, and a control plane that can go away and come back
//! while traffic flows.

use std::process::Command;
use std::time::Duration;

use stagedoor_e2e::fixtures::registry_with;
use stagedoor_e2e::stack::{stagedoor_bin, time_until};
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
    assert_eq!(stack.get_as_admin("/api/v1/live/1").0, 200);
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
    use stagedoor_proto::v1::control_plane_client::ControlPlaneClient;
    use stagedoor_proto::v1::{DeregisterInstanceRequest, RegisterInstanceRequest};
    let mut stack = start();
    let port = stack.start_echo("live");
    let server = format!("http://127.0.0.1:{}", stack.xds_port);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client = ControlPlaneClient::connect(server).await.unwrap();
        let bad = RegisterInstanceRequest { service: "live".into(), address: "not-an-ip".into(), port: 1, ttl_seconds: 0 };
        let e = client.register_instance(bad).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        let good = RegisterInstanceRequest { service: "live".into(), address: "127.0.0.1".into(), port: u32::from(port), ttl_seconds: 60 };
        client.register_instance(good).await.unwrap();
    });
    assert!(time_until(Duration::from_secs(3), || stack.get_as_admin("/api/v1/live/1").0 == 200).is_some());
    runtime.block_on(async {
        let mut client = ControlPlaneClient::connect(format!("http://127.0.0.1:{}", stack.xds_port)).await.unwrap();
        let req = DeregisterInstanceRequest { service: "live".into(), address: "127.0.0.1".into(), port: u32::from(port) };
        client.deregister_instance(req).await.unwrap();
    });
    assert!(time_until(Duration::from_secs(3), || stack.get_as_admin("/api/v1/live/1").0 == 503).is_some());
}
