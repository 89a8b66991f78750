#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The RateLimitService's own throughput, with no Envoy in the path: a gRPC load client with
//! an Envoy's client certificate asks ShouldRateLimit with one descriptor (one user, a limit
//! nothing reaches) from CONCURRENCY tasks over one HTTP/2 channel, against a real Redis.
//! A measurement, not a check: `#[ignore]`d, run by hand or by bench/ratelimit_cost.py:
//!   cargo test -p stagedoor-e2e --test ratelimit_throughput -- --ignored --nocapture
//! The control plane is $STAGEDOOR_BIN, else target/release/stagedoor when it exists, else the debug build.
//! Bounded: at most MAX_CALLS calls and SECONDS seconds.

use std::time::{Duration, Instant};

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{rate_limit_descriptor::Entry, RateLimitDescriptor};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use stagedoor_e2e::fixtures::{auth_yaml, VENUE_SERVICE};
use stagedoor_e2e::ports::free_port;
use stagedoor_e2e::stack::workspace_root;
use stagedoor_e2e::{Stack, StackOptions};

const CONCURRENCY: usize = 16;
const SECONDS: u64 = 5;
const MAX_CALLS: usize = 200_000;

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn ratelimit_service_throughput() {
    let release = workspace_root().join("target/release/stagedoor");
    if std::env::var_os("STAGEDOOR_BIN").is_none() && release.exists() {
        std::env::set_var("STAGEDOOR_BIN", &release);
    }
    let binary = stagedoor_e2e::stack::stagedoor_bin();
    let port = free_port();
    let registry = format!(
        "{}global_rate_limit:\n  salt: bench-salt\n  limits:\n    - {{ name: api, requests: 100000000, period_ms: 60000, routes: [/api/v1/venues] }}\nservices:\n{VENUE_SERVICE}",
        auth_yaml()
    );
    let stack = Stack::start(StackOptions {
        registry_yaml: registry,
        redis: true,
        serve_args: vec![String::from("--ratelimit"), format!("127.0.0.1:{port}")],
        ..Default::default()
    });
    stack.wait_ready();
    let read = |name: &str| std::fs::read_to_string(stack.tls_dir.join(name)).unwrap();
    let stem = format!("envoy-{}", stack.envoys[0].node_id);
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(read("ca.pem")))
        .identity(tonic::transport::Identity::from_pem(read(&format!("{stem}.pem")), read(&format!("{stem}-key.pem"))));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (calls, latencies, errors, elapsed) = rt.block_on(async {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("https://127.0.0.1:{port}")).unwrap().tls_config(tls).unwrap();
        let client = RateLimitServiceClient::new(endpoint.connect().await.unwrap());
        let entry = |key: &str, value: &str| Entry { key: key.into(), value: value.into() };
        let request = RateLimitRequest {
            domain: "stagedoor".into(),
            descriptors: vec![RateLimitDescriptor { entries: vec![entry("path", "/api/v1/venues/1"), entry("user", "bench")], ..Default::default() }],
            hits_addend: 0,
        };
        let started = Instant::now();
        let deadline = started + Duration::from_secs(SECONDS);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..CONCURRENCY {
            let mut client = client.clone();
            let request = request.clone();
            tasks.spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0usize);
                while Instant::now() < deadline && latencies.len() + errors < MAX_CALLS / CONCURRENCY {
                    let sent = Instant::now();
                    match client.should_rate_limit(request.clone()).await {
                        Ok(reply) if reply.get_ref().overall_code == 1 => latencies.push(sent.elapsed()),
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            });
        }
        let (mut all, mut errors) = (Vec::new(), 0);
        while let Some(done) = tasks.join_next().await {
            let (latencies, e) = done.unwrap();
            all.extend(latencies);
            errors += e;
        }
        (all.len(), all, errors, started.elapsed())
    });
    let mut latencies = latencies;
    latencies.sort();
    let at = |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))).copied().unwrap_or_default();
    let binary = binary.strip_prefix(workspace_root()).unwrap_or(&binary).display().to_string();
    println!(
        "RESULT control plane {binary}: {calls} OK calls in {elapsed:?} = {:.0} calls/s with {CONCURRENCY} in flight; p50 {:?} p99 {:?}; {errors} errors",
        calls as f64 / elapsed.as_secs_f64(),
        at(0.5),
        at(0.99)
    );
    let evalsha = stack.redis_cli(&["INFO", "commandstats"]);
    println!("redis commandstats: {}", evalsha.lines().filter(|l| l.starts_with("cmdstat_evalsha")).collect::<Vec<_>>().join(" "));
    assert!(calls > 0 && errors == 0, "{calls} calls, {errors} errors");
}
