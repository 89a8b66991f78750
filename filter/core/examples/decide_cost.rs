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
    let mut state = FilterState { cache: TokenCache::new(4096), revocations: RevocationList::default() };
    let headers: Vec<(String, String)> = vec![
        (":authority".into(), "127.0.0.1:8080".into()),
        (":path".into(), "/api/v1/venues/v1".into()),
        (":method".into(), "GET".into()),
        (":scheme".into(), "http".into()),
        ("authorization".into(), format!("Bearer {token}")),
        ("x-tenant-id".into(), "evil".into()),
        ("x-forwarded-proto".into(), "http".into()),
        ("x-request-id".into(), "5f1c7a9e-3b7c-4a59-9b1f-2f0f3f1b7a11".into()),
        ("x-forwarded-for".into(), "127.0.0.1".into()),
    ];
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let request = RequestView { method: "GET", path: "/api/v1/venues/v1", headers: &headers };
    let n = 1_000_000;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(decide(&policy, &request, now, &mut state));
    }
    println!("decide (cache hit): {:.0} ns/call", start.elapsed().as_nanos() as f64 / n as f64);
}
