#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Stopping the control plane as Kubernetes does (SIGTERM) while Envoys hold ADS streams.

use std::process::Command;
use std::time::Duration;

use stagedoor_e2e::fixtures::registry_with;
use stagedoor_e2e::stack::time_until;
use stagedoor_e2e::{Stack, StackOptions};

/// Sends `signal` (a `kill` name such as TERM) to the control plane this stack started.
fn signal_control_plane(stack: &Stack, signal: &str) {
    let pid = stack.control_plane.as_ref().expect("control plane running").id();
    let status = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

#[test]
fn sigterm_with_an_envoy_attached_exits_at_once_and_envoy_keeps_serving() {
    let mut stack = Stack::start(StackOptions { registry_yaml: registry_with(""), ..Default::default() });
    stack.wait_ready();
    let attached = time_until(Duration::from_secs(10), || {
        stack.control_plane_status()["envoys"].as_array().is_some_and(|e| !e.is_empty())
    });
    assert!(attached.is_some(), "Envoy holds an ADS stream before the signal");

    signal_control_plane(&stack, "TERM");
    let mut exit = None;
    let took = time_until(Duration::from_secs(15), || {
        exit = stack.control_plane.as_mut().unwrap().try_wait().unwrap();
        exit.is_some()
    });
    eprintln!("SIGTERM with an Envoy attached -> exited after {took:?} with {exit:?}");
    assert!(took.is_some_and(|t| t < Duration::from_secs(2)), "still running {took:?} after SIGTERM");
    assert!(exit.unwrap().success(), "a requested stop is a clean exit: {exit:?}");
    stack.control_plane = None;
    let log = stack.control_plane_log();
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains("drain limit reached"), "the streams and servers finished by themselves: {log}");

    // Nothing of the old process answers, and its ports are free for a replacement.
    let status = stagedoor_e2e::stack::operator_client(&stack.tls_dir).get(format!("https://127.0.0.1:{}/status", stack.http_port)).send();
    assert!(status.is_err(), "/status answered after the exit: {status:?}");
    for port in [stack.xds_port, stack.http_port, stack.metrics_port] {
        drop(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| panic!("port {port} still held: {e}")));
    }
    for _ in 0..20 {
        assert_eq!(stack.get_as_admin("/api/v1/venues/1").0, 200, "Envoy serves its last config");
    }

    stack.start_control_plane();
    let reattached = time_until(Duration::from_secs(20), || {
        stack.control_plane_status()["envoys"].as_array().is_some_and(|e| !e.is_empty())
    });
    eprintln!("replacement control plane: Envoy back after {reattached:?}");
    assert!(reattached.is_some(), "Envoy re-attaches to the replacement");
}
