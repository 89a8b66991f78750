#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Bad input from an operator (issue 10, item 8): each is refused with a clear error naming
//! the field, changes nothing, and the last good config keeps serving.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use stagedoor_e2e::fixtures::registry_with;
use stagedoor_e2e::stack::{stagedoor_bin, time_until};
use stagedoor_e2e::{Stack, StackOptions};

fn start() -> Stack {
    let registry = registry_with("  - name: live\n    routes: [{ prefix: /api/v1/live }]\n    traffic: { health_check: { enabled: false } }\n");
    let stack = Stack::start(StackOptions { registry_yaml: registry, redis: true, ..Default::default() });
    stack.wait_ready();
    stack
}

fn stagedoor(stack: &Stack, args: &[&str]) -> Output {
    Command::new(stagedoor_bin())
        .args(args)
        .env("STAGEDOOR_REDIS", stack.redis_url().unwrap())
        .env("STAGEDOOR_REGISTRY", &stack.registry_path)
        .env("STAGEDOOR_SERVER", stack.api_url())
        .env("STAGEDOOR_TLS_DIR", &stack.tls_dir)
        .output()
        .unwrap()
}

/// Asserts the command failed with `message` on stderr, in one short line.
fn refused(out: &Output, message: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit code {:?}, stderr {stderr}", out.status.code());
    assert!(stderr.contains(message), "{stderr}");
    assert!(stderr.len() < 1_000, "{} bytes of error", stderr.len());
}

fn live_keys(stack: &Stack) -> String {
    let port = stack.redis.as_ref().unwrap().1.to_string();
    let out = Command::new("redis-cli").args(["-p", &port, "--scan", "--pattern", "stagedoor:instance:*"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn register_refuses_what_the_registry_would_refuse_over_the_cli_and_grpc() {
    let stack = start();
    let register = |service: &str, port: &str, ttl: &str| {
        stagedoor(&stack, &["register", "--service", service, "--address", "127.0.0.1", "--port", port, "--ttl", ttl])
    };
    refused(&register("Bad_Name!", "4000", "30s"), "service: \"Bad_Name!\" must match [a-z][a-z0-9-]{0,39}");
    refused(&register("seats", "4000", "30s"), "service: the registry has no service \"seats\"");
    refused(&register("live", "0", "30s"), "port: 0 must be 1-65535");
    refused(&register("live", "70000", "30s"), "port: 70000 must be 1-65535");
    refused(&register("live", "4000", "0s"), "ttl: 0 s must be 1 s to 1 day");
    refused(&register("live", "4000", "9999999999999999d"), "longer than the most allowed");
    refused(&stagedoor(&stack, &["deregister", "--service", "Bad_Name!", "--address", "127.0.0.1", "--port", "1"]), "service:");
    assert_eq!(live_keys(&stack), "", "nothing reached Redis");

    use stagedoor_proto::v1::RegisterInstanceRequest;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client = stack.api_client().await;
        let request = |service: &str, port: u32, ttl_seconds: u32| RegisterInstanceRequest {
            service: service.into(),
            address: "127.0.0.1".into(),
            port,
            ttl_seconds,
        };
        for (bad, message) in [
            (request("Bad_Name!", 4000, 30), "service: \"Bad_Name!\" must match"),
            (request("seats", 4000, 30), "the registry has no service \"seats\""),
            (request("live", 0, 30), "port: 0 must be 1-65535"),
            (request("live", 4000, 100_000), "ttl: 100000 s must be 1 s to 1 day"),
        ] {
            let e = client.register_instance(bad).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
            assert!(e.message().contains(message), "{}", e.message());
        }
    });
    assert_eq!(live_keys(&stack), "", "nothing reached Redis");
    let out = register("live", "4000", "30s");
    assert!(out.status.success(), "a good one still registers: {}", String::from_utf8_lossy(&out.stderr));
    assert!(live_keys(&stack).contains("stagedoor:instance:live:127.0.0.1:4000"));
}

#[test]
fn token_revoke_refuses_a_huge_jti_and_one_with_a_newline() {
    let stack = start();
    let huge = "j".repeat(100_000);
    refused(&stagedoor(&stack, &["token", "revoke", "--jti", &huge]), "jti: 100000 bytes; at most 256");
    refused(&stagedoor(&stack, &["token", "revoke", "--jti", "two\nlines"]), "jti: '\\n' is not allowed");
    assert_eq!(stack.control_plane_status()["revoked_tokens"], 0, "nothing was revoked");
    let out = stagedoor(&stack, &["token", "revoke", "--jti", "a-good-jti"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn control_plane_rss_kib(stack: &Stack) -> u64 {
    let pid = stack.control_plane.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_registry_over_the_size_limit_is_refused_in_one_short_line_and_the_last_good_config_serves() {
    let stack = start();
    let good = stack.registry();
    // 20 MB: one service's route prefix is a 20 MB value, as in the issue.
    let huge = good.replacen("prefix: /api/v1/live", &format!("prefix: /api/v1/live{}", "x".repeat(20_000_000)), 1);
    let file = stack.dir.join("huge.yaml");
    std::fs::write(&file, &huge).unwrap();
    let started = Instant::now();
    let out = stagedoor(&stack, &["apply", "-f", &file.display().to_string()]);
    refused(&out, "bytes is over the registry's limit of 4000000 bytes");
    eprintln!("apply refused in {:?}", started.elapsed());

    let rss_before = control_plane_rss_kib(&stack);
    stack.write_registry(&huge);
    let logged = time_until(Duration::from_secs(5), || stack.control_plane_log().contains("over the registry's limit"));
    assert!(logged.is_some(), "the file watcher refuses it too");
    std::thread::sleep(Duration::from_secs(1)); // a few more polls of the same file
    let rss_after = control_plane_rss_kib(&stack);
    eprintln!("control-plane RSS {rss_before} -> {rss_after} KiB around a 20 MB registry file");
    // Reading it (and keeping a copy) cost about +40 MB; refused from its size, nothing.
    assert!(rss_after < rss_before + 15 * 1024, "the oversize file is not read: {rss_before} -> {rss_after} KiB");
    let longest = stack.control_plane_log().lines().map(str::len).max().unwrap_or(0);
    eprintln!("longest control-plane log line: {longest} bytes");
    assert!(longest < 2_000, "no log line echoes the registry: {longest} bytes");
    assert_eq!(stack.get_as_admin("/api/v1/venues/1").0, 200, "the last good config keeps serving");

    // Just under the limit but with a 3 MB bad value: the error echoes a bounded part of it.
    let bad = good.replacen("prefix: /api/v1/live", &format!("prefix: api/v1/live{}", "x".repeat(3_000_000)), 1);
    std::fs::write(&file, &bad).unwrap();
    let out = stagedoor(&stack, &["validate", &file.display().to_string()]);
    refused(&out, "routes[0].prefix: must start with '/'");
}

#[test]
fn apply_dry_run_shows_every_changed_section() {
    let stack = start();
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&stack.registry()).unwrap();
    doc["rate_limit"] = serde_yaml::from_str("{ requests: 100, window_ms: 60000 }").unwrap();
    doc["webhooks"] = serde_yaml::from_str("[{ path: /api/v1/live/stripe, stripe_secret: whsec_test }]").unwrap();
    let file = stack.dir.join("proposed.yaml");
    std::fs::write(&file, serde_yaml::to_string(&doc).unwrap()).unwrap();
    let out = stagedoor(&stack, &["apply", "-f", &file.display().to_string(), "--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("~ rate_limit\n") && stdout.contains("~ webhooks\n"), "{stdout}");
    assert!(!stdout.contains("no changes"), "{stdout}");
}

/// Limits of 2 services, 2 prefixes and 2 instances per service (registry/limits.rs): each
/// registry over one is refused naming it, at apply, file load and validate, and the last
/// good config serves; live instances past the limit are not pushed, and said so.
#[test]
fn a_registry_over_a_limit_is_refused_naming_it_and_live_instances_past_it_are_left_out() {
    let registry = registry_with("  - name: live\n    routes: [{ prefix: /api/v1/live }]\n    traffic: { health_check: { enabled: false } }\n");
    let limits = ["--max-services", "2", "--max-routes-per-service", "2", "--max-instances-per-service", "2"];
    let serve_args = limits.iter().map(|a| a.to_string()).collect();
    let stack = Stack::start(StackOptions { registry_yaml: registry, redis: true, serve_args, ..Default::default() });
    stack.wait_ready();
    let good = stack.registry();
    let file = stack.dir.join("over.yaml");
    let apply = |yaml: &str| {
        std::fs::write(&file, yaml).unwrap();
        stagedoor(&stack, &["apply", "-f", &file.display().to_string()])
    };
    let edited = |edit: &dyn Fn(&mut serde_yaml::Value)| {
        let mut doc: serde_yaml::Value = serde_yaml::from_str(&good).unwrap();
        edit(&mut doc);
        serde_yaml::to_string(&doc).unwrap()
    };
    let three_services = edited(&|doc| {
        let third = serde_yaml::from_str("{ name: third, routes: [{ prefix: /api/v1/third }] }").unwrap();
        doc["services"].as_sequence_mut().unwrap().push(third);
    });
    let message = "services: 3 is over the limit of 2 services (serve --max-services)";
    refused(&apply(&three_services), message);
    let three_prefixes = edited(&|doc| {
        let live = doc["services"].as_sequence_mut().unwrap().iter_mut().find(|s| s["name"] == "live").unwrap();
        live["routes"] = serde_yaml::from_str("[{ prefix: /api/v1/live }, { prefix: /l2 }, { prefix: /l3 }]").unwrap();
    });
    refused(&apply(&three_prefixes), "service \"live\": routes: 3 prefixes is over the limit of 2 per service (serve --max-routes-per-service)");
    assert_eq!(stack.registry(), good, "nothing written");

    stack.write_registry(&three_services);
    let logged = time_until(Duration::from_secs(5), || stack.control_plane_log().contains(message));
    assert!(logged.is_some(), "the file watcher refuses it too");
    assert_eq!(stack.get_as_admin("/api/v1/venues/1").0, 200, "the last good config keeps serving");
    assert_eq!(stack.get_as_admin("/api/v1/third/1").0, 404, "the refused service is not routed");
    stack.write_registry(&good);

    let check = |extra: &[&str]| {
        let mut args = vec!["validate", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        stagedoor(&stack, &args)
    };
    std::fs::write(&file, &three_services).unwrap();
    refused(&check(&limits), message);
    let with_defaults = check(&[]);
    assert!(with_defaults.status.success(), "10,000 services by default: {}", String::from_utf8_lossy(&with_defaults.stderr));

    // Three live instances of `live`, whose limit is 2: two are pushed, the third is not.
    for port in ["4001", "4002", "4003"] {
        let out = stagedoor(&stack, &["register", "--service", "live", "--address", "127.0.0.1", "--port", port, "--ttl", "60s"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let warned = time_until(Duration::from_secs(5), || stack.control_plane_log().contains("instances over the per-service limit"));
    assert!(warned.is_some(), "{}", stack.control_plane_log());
    // Envoy's /clusters lists each host of a cluster once with its health flags.
    let live_hosts = || stack.envoy_admin(0, "/clusters").lines().filter(|l| l.starts_with("svc_live::") && l.contains("::health_flags::")).count();
    let members = time_until(Duration::from_secs(5), || live_hosts() == 2);
    assert!(members.is_some(), "Envoy has 2 of the 3: {}", live_hosts());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(live_hosts(), 2, "and not the third");
    let metrics = stagedoor_e2e::stack::client().get(format!("http://127.0.0.1:{}/metrics", stack.metrics_port)).send().unwrap().text().unwrap();
    assert!(metrics.contains("stagedoor_live_instances_over_limit 1\n"), "{metrics}");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client = stack.api_client().await;
        let request = stagedoor_proto::v1::RegisterInstanceRequest { service: "live".into(), address: "127.0.0.1".into(), port: 4009, ttl_seconds: 30 };
        let e = client.register_instance(request).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");
        assert!(e.message().contains("service \"live\": instances: 4 is over the limit of 2 per service"), "{}", e.message());
    });
}
