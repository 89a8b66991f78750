#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `stagedoor register --heartbeat` survives a Redis restart (the test's redis-server has
//! no persistence, so it comes back empty) and deregisters on SIGTERM.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use stagedoor_e2e::fixtures::registry_with;
use stagedoor_e2e::stack::{stagedoor_bin, time_until};
use stagedoor_e2e::{Stack, StackOptions};

fn start() -> Stack {
    let registry = registry_with(
        r#"  - name: live
    routes: [{ prefix: /api/v1/live }]
    traffic:
      retries: { attempts: 1, base_interval_ms: 10, max_interval_ms: 20 }
      health_check: { enabled: false }
"#,
    );
    let stack = Stack::start(StackOptions { registry_yaml: registry, redis: true, ..Default::default() });
    stack.wait_ready();
    stack
}

/// `stagedoor register --heartbeat` as a child process, logging to the stack's directory.
fn heartbeat(stack: &Stack, port: u16, ttl: &str) -> Child {
    let log = std::fs::File::create(stack.dir.join(format!("heartbeat-{port}.log"))).unwrap();
    Command::new(stagedoor_bin())
        .args(["register", "--service", "live", "--address", "127.0.0.1", "--port", &port.to_string(), "--ttl", ttl])
        .args(["--heartbeat", "--redis", &stack.redis_url().unwrap()])
        // register checks the instance against the registry the control plane serves.
        .env("STAGEDOOR_REGISTRY", &stack.registry_path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// Kills the child if a test fails before it ends it.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_heartbeat_survives_a_redis_restart_longer_than_its_ttl() {
    let mut stack = start();
    let port = stack.start_echo("live");
    let key = format!("stagedoor:instance:live:127.0.0.1:{port}");
    let mut beat = Reaped(heartbeat(&stack, port, "2s"));
    assert!(time_until(Duration::from_secs(5), || stack.get_as_admin("/api/v1/live/1").0 == 200).is_some(), "registered");

    stack.stop_redis();
    std::thread::sleep(Duration::from_secs(4));
    assert!(beat.0.try_wait().unwrap().is_none(), "the heartbeat died with Redis away: {}", log(&stack, port));

    stack.start_redis();
    let restarted_ms = unix_ms();
    let restarted = Instant::now();
    let back = time_until(Duration::from_secs(10), || {
        let status = stack.control_plane_status();
        let discovery = &status["discovery"];
        stack.redis_cli(&["EXISTS", &key]) == "1"
            && discovery["last_sync_unix_ms"].as_u64().is_some_and(|t| t > restarted_ms)
            && discovery["live_instances"] == 1
    });
    eprintln!("redis restarted empty -> instance back in redis and EDS after {:?}", back.map(|_| restarted.elapsed()));
    assert!(back.is_some(), "the instance never came back: {}", log(&stack, port));
    assert!(time_until(Duration::from_secs(3), || stack.get_as_admin("/api/v1/live/1").0 == 200).is_some());
    let ttl: i64 = stack.redis_cli(&["TTL", &key]).parse().unwrap();
    assert!((1..=2).contains(&ttl), "set again with its TTL: {ttl}");
    std::thread::sleep(Duration::from_secs(3));
    assert!(beat.0.try_wait().unwrap().is_none(), "and keeps heartbeating");
    assert_eq!(stack.redis_cli(&["EXISTS", &key]), "1", "refreshed past its 2 s TTL");
}

#[test]
fn sigterm_deregisters_a_heartbeating_instance() {
    let mut stack = start();
    let port = stack.start_echo("live");
    let key = format!("stagedoor:instance:live:127.0.0.1:{port}");
    let mut beat = Reaped(heartbeat(&stack, port, "60s"));
    assert!(time_until(Duration::from_secs(5), || stack.get_as_admin("/api/v1/live/1").0 == 200).is_some(), "registered");

    signal(&beat.0, "TERM");
    let mut exit = None;
    let took = time_until(Duration::from_secs(5), || {
        exit = beat.0.try_wait().unwrap();
        exit.is_some()
    });
    eprintln!("SIGTERM -> heartbeat exited after {took:?} with {exit:?}");
    assert!(exit.is_some_and(|e| e.success()), "{exit:?}: {}", log(&stack, port));
    assert_eq!(stack.redis_cli(&["EXISTS", &key]), "0", "deregistered, not left to its 60 s TTL");
    let gone = time_until(Duration::from_secs(3), || stack.get_as_admin("/api/v1/live/1").0 == 503);
    assert!(gone.is_some(), "and gone from EDS");
}

fn log(stack: &Stack, port: u16) -> String {
    std::fs::read_to_string(stack.dir.join(format!("heartbeat-{port}.log"))).unwrap_or_default()
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}
