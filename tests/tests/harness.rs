#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The harness itself: a stack never goes on with a component that did not come up, and
//! says which one, with its log.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stagedoor_e2e::fixtures::auth_yaml;
use stagedoor_e2e::stack::wait_up;
use stagedoor_e2e::{Stack, StackOptions};

/// An echo upstream that exits at once (here its binary is `/bin/false`) stops the stack's
/// start with its name; before, the harness waited 10 s, ignored the outcome and went on.
#[test]
fn a_stack_whose_echo_upstream_exits_stops_and_names_it() {
    // Only this test in this file starts a stack, so no other test sees the variable.
    std::env::set_var("STAGEDOOR_ECHO_BIN", "/bin/false");
    let registry = auth_yaml() + "services:\n  - name: venue\n    routes: [{ prefix: /api/v1/venues }]\n    instances: [{ address: 127.0.0.1, port: 1 }]\n";
    let start = Instant::now();
    let outcome = std::panic::catch_unwind(|| Stack::start(StackOptions { registry_yaml: registry, ..Default::default() }));
    let took = start.elapsed();
    eprintln!("the stack's start failed after {} ms", took.as_millis());
    let payload = outcome.err().expect("the stack must not start without its echo upstream");
    let message = payload.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("echo upstream venue on port") && message.contains("exited"), "{message}");
    assert!(took < Duration::from_secs(10), "an exited component fails at once, not after the limit: {took:?}");
}

/// A process that runs but never answers is named once the limit passes, with the limit.
#[test]
fn a_component_that_never_answers_is_named_after_the_limit() {
    let log = std::env::temp_dir().join(format!("stagedoor-harness-{}.log", std::process::id()));
    std::fs::write(&log, "first line\nlast line of the log\n").unwrap();
    let mut child = Command::new("sleep").arg("30").stdout(Stdio::null()).spawn().unwrap();
    let start = Instant::now();
    let failure = wait_up("the sleeper", &mut child, &log, Duration::from_millis(300), || false).unwrap_err();
    eprintln!("gave up after {} ms", start.elapsed().as_millis());
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&log);
    assert!(failure.starts_with("the sleeper did not come up within 300 ms"), "{failure}");
    assert!(failure.contains("last line of the log"), "{failure}");
}
