//! Rough per-call cost of `decide` natively (cache hit path), for profiling the filter.
#![allow(clippy::expect_used, clippy::unwrap_used)]
use std::time::Instant;

use stagedoor_filter_core::cache::TokenCache;
use stagedoor_filter_core::config::FilterConfig;
use stagedoor_filter_core::revocation::RevocationList;
use stagedoor_filter_core::{decide, FilterState, Policy, RequestView};

fn main() {
    let mut args = std::env::args().skip(1);
    let config_json = std::fs::read_to_string(args.next().expect("filter config json path")).expect("read");
    let token = args.next().expect("token");
    let config = FilterConfig::from_json(config_json.as_bytes()).expect("config");
    let policy = Policy::compile(&config).expect("policy");
    let mut state = FilterState { cache: TokenCache::new(4096), revocations: RevocationList::default(), key_reports: Default::default() };
    let authorization = format!("Bearer {token}");
    let headers = [
        (":authority", "127.0.0.1:8080"),
        (":path", "/api/v1/venues/v1"),
        (":method", "GET"),
        (":scheme", "http"),
        ("authorization", authorization.as_str()),
        ("x-tenant-id", "evil"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "5f1c7a9e-3b7c-4a59-9b1f-2f0f3f1b7a11"),
        ("x-forwarded-for", "127.0.0.1"),
    ];
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let request = RequestView { method: "GET", path: "/api/v1/venues/v1", headers: &headers };
    let n = 1_000_000;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(decide(&policy, &request, now, &mut state));
    }
    println!("decide (cache hit, warm): {:.0} ns/call", start.elapsed().as_nanos() as f64 / n as f64);

    // Inside Envoy the filter runs between Envoy's own work, which evicts the VM's data
    // from the CPU caches: every request starts cold. Evict between calls to price that.
    // The eviction size in MiB: 2 clears L1 and L2 on these machines, 64 the L3 too.
    let evict_mib: usize = args.next().map_or(2, |a| a.parse().expect("eviction size in MiB"));
    let mut evict = vec![0u8; evict_mib << 20];
    let rounds = 20_000;
    let mut total = std::time::Duration::ZERO;
    for round in 0..rounds {
        for line in evict.chunks_mut(64) {
            line[0] = line[0].wrapping_add(round as u8);
        }
        let start = Instant::now();
        std::hint::black_box(decide(&policy, &request, now, &mut state));
        total += start.elapsed();
    }
    std::hint::black_box(&evict);
    println!("decide (cache hit, {evict_mib} MiB evicted before each call): {:.0} ns/call", total.as_nanos() as f64 / rounds as f64);
}
