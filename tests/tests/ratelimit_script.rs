#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The Redis half of global rate limiting against a real redis-server: the Lua script decides
//! and writes as the pure model (`stagedoor_ratelimit::decide`) says, one EVALSHA per
//! request, re-loaded after SCRIPT FLUSH, and a stopped Redis is an error within the timeout.

use std::time::{Duration, Instant};

use stagedoor_e2e::ports::free_port;
use stagedoor_e2e::redis::PrivateRedis;
use stagedoor_ratelimit::compile::CompiledLimits;
use stagedoor_ratelimit::decide::KeyedLimit;
use stagedoor_ratelimit::gcra::Rate;
use stagedoor_ratelimit::store::{RedisStore, StoreError};

const TIMEOUT: Duration = Duration::from_millis(500);

/// A private redis-server, with what these tests read of it.
struct Redis(PrivateRedis);

impl Redis {
    fn start() -> Redis {
        Redis(PrivateRedis::start())
    }

    fn url(&self) -> String {
        self.0.url()
    }

    fn cli(&self, args: &[&str]) -> String {
        self.0.cli(args).join("\n").trim().to_owned()
    }

    /// `calls` of one command in INFO commandstats (0 when never called).
    fn calls(&self, command: &str) -> u64 {
        let stats = self.cli(&["INFO", "commandstats"]);
        let prefix = format!("cmdstat_{command}:calls=");
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    }
}

fn limit(key: &str, requests: u32, period_ms: u64, shadow: bool, count_refused: bool) -> KeyedLimit {
    KeyedLimit { key: key.into(), rate: Rate::new(requests, period_ms, requests).unwrap(), shadow, count_refused }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn the_script_decides_and_writes_as_the_model() {
    let redis = Redis::start();
    runtime().block_on(async {
        let store = RedisStore::connect(&redis.url(), TIMEOUT).await.unwrap();
        // Limits that bind at different times, one shadow, one counting refusals; requests
        // check varying subsets, so some are refused by one limit and admitted by another.
        let limits = [
            limit("k:tight", 3, 400, false, false),
            limit("k:wide", 20, 2000, false, false),
            limit("k:shadow", 2, 1000, true, false),
            limit("k:counted", 4, 800, false, true),
        ];
        let subsets: [&[usize]; 5] = [&[0, 1], &[1, 2], &[0, 1, 2], &[3], &[1, 3, 2]];
        let (mut admitted, mut refused, mut shadow_refusals) = (0, 0, 0);
        let started = Instant::now();
        for i in 0..300usize {
            let chosen: Vec<KeyedLimit> = subsets[i % subsets.len()].iter().map(|&k| limits[k].clone()).collect();
            let counted = store.count(&chosen, 1).await.unwrap();
            let answered = Instant::now();
            let d = &counted.decision;
            if d.admitted { admitted += 1 } else { refused += 1 }
            shadow_refusals += chosen.iter().zip(&d.per_check).filter(|(l, o)| l.shadow && !o.is_admitted()).count();
            for (l, write) in chosen.iter().zip(&d.writes) {
                if let Some(write) = write {
                    let stored = redis.cli(&["GET", &l.key]);
                    let pttl: i64 = redis.cli(&["PTTL", &l.key]).parse().unwrap();
                    // A short-lived key may expire before redis-cli reads it on a loaded
                    // machine: then only its lifetime can be checked, and it must be over.
                    let lived = answered.elapsed();
                    if stored.is_empty() || pttl == -2 {
                        assert!(
                            lived.as_micros() >= u128::from(write.ttl_us),
                            "request {i}, {}: gone after {lived:?}, written to live {} us",
                            l.key,
                            write.ttl_us
                        );
                        continue;
                    }
                    assert_eq!(stored, write.tat_us.to_string(), "request {i}, {}", l.key);
                    assert!(pttl >= 0 && pttl.unsigned_abs() <= write.ttl_us.div_ceil(1000), "request {i}: pttl {pttl} ms for {} us", write.ttl_us);
                }
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        println!("300 requests in {:?}: {admitted} admitted, {refused} refused, {shadow_refusals} shadow refusals", started.elapsed());
        assert!(admitted > 0 && refused > 0 && shadow_refusals > 0, "the sequence exercised every branch");
    });
}

#[test]
fn one_evalsha_per_request_and_no_expire() {
    let redis = Redis::start();
    runtime().block_on(async {
        let store = RedisStore::connect(&redis.url(), TIMEOUT).await.unwrap();
        redis.cli(&["CONFIG", "RESETSTAT"]);
        let limits = [limit("a", 5, 1000, false, false), limit("b", 100, 60_000, false, false)];
        let mut admitted = 0;
        let started = Instant::now();
        for _ in 0..50 {
            admitted += usize::from(store.count(&limits, 1).await.unwrap().decision.admitted);
        }
        let elapsed = started.elapsed();
        println!("50 requests, 2 limits each, in {elapsed:?}: {admitted} admitted");
        // Bound: burst 5 + elapsed / 200 ms emission.
        assert!(admitted as u128 <= 5 + elapsed.as_millis() / 200, "{admitted} in {elapsed:?}");
        assert_eq!(redis.calls("evalsha"), 50);
        assert_eq!(redis.calls("eval"), 0);
        assert_eq!(redis.calls("expire") + redis.calls("pexpire"), 0);
        // Inside the script: TIME once, GET per key, SET only for admitted requests.
        println!("inside the script: time {} get {} set {}", redis.calls("time"), redis.calls("get"), redis.calls("set"));
        assert_eq!(redis.calls("set"), 2 * admitted as u64, "refused requests wrote nothing");
    });
}

#[test]
fn the_script_is_loaded_again_after_a_flush() {
    let redis = Redis::start();
    runtime().block_on(async {
        let store = RedisStore::connect(&redis.url(), TIMEOUT).await.unwrap();
        let limits = [limit("f", 10, 1000, false, false)];
        assert!(!store.count(&limits, 1).await.unwrap().reloaded);
        redis.cli(&["SCRIPT", "FLUSH"]);
        let counted = store.count(&limits, 1).await.unwrap();
        assert!(counted.reloaded && counted.decision.admitted);
        assert!(!store.count(&limits, 1).await.unwrap().reloaded);
    });
}

#[test]
fn a_stopped_redis_is_an_error_within_the_timeout_and_a_restarted_one_serves_again() {
    let mut redis = Redis::start();
    runtime().block_on(async {
        let store = RedisStore::connect(&redis.url(), TIMEOUT).await.unwrap();
        let limits = [limit("r", 10, 1000, false, false)];
        store.count(&limits, 1).await.unwrap();
        redis.0.stop();
        let started = Instant::now();
        let err = store.count(&limits, 1).await.unwrap_err();
        let elapsed = started.elapsed();
        println!("stopped Redis: {err} after {elapsed:?}");
        assert!(matches!(err, StoreError::Redis(_) | StoreError::Timeout(_)), "{err:?}");
        assert!(elapsed < TIMEOUT * 3, "{elapsed:?}");
        // Same port, empty Redis (no script loaded): the store reconnects and reloads.
        redis.0.restart();
        let restarted = Instant::now();
        let counted = loop {
            match store.count(&limits, 1).await {
                Ok(counted) => break counted,
                Err(_) if restarted.elapsed() < Duration::from_secs(10) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("not back after {:?}: {e}", restarted.elapsed()),
            }
        };
        println!("served again {:?} after the restart", restarted.elapsed());
        assert!(counted.reloaded && counted.decision.admitted);
    });
}

fn limiter(url: &str, yaml: &str) -> (stagedoor_ratelimit::limiter::Limiter, CompiledLimits) {
    let config: stagedoor_ratelimit::config::GlobalRateLimitConfig = serde_yaml::from_str(yaml).unwrap();
    let compiled = stagedoor_ratelimit::compile::compile(&config, |_| None).unwrap();
    let store = RedisStore::lazy(url, Duration::from_millis(50)).unwrap();
    (stagedoor_ratelimit::limiter::Limiter::new(Some(store), compiled.local_fallback_keys), compiled)
}

const FAIL_MODES: &str = "
salt: test-salt
limits:
  - { name: open, requests: 3, period_ms: 60000, routes: [/open], fail_mode: open }
  - { name: closed, requests: 3, period_ms: 60000, routes: [/closed], fail_mode: closed }
  - { name: local, requests: 3, period_ms: 60000, routes: [/local] }
  - { name: login, requests: 3, period_ms: 60000, routes: [/api/v1/auth/login] }
";

#[test]
fn with_redis_stopped_each_route_takes_its_fail_mode_and_it_is_counted() {
    use stagedoor_ratelimit::limiter::Verdict;
    use stagedoor_ratelimit::plan::RequestView;
    // A port nothing listens on: Redis is down from the start.
    let url = format!("redis://127.0.0.1:{}", free_port());
    let (limiter, limits) = limiter(&url, FAIL_MODES);
    runtime().block_on(async {
        let at = |path| RequestView { path, remote_address: Some("10.0.0.1"), ..Default::default() };
        assert_eq!(limiter.check(&limits, &at("/open/x"), 1).await, Verdict::Admit { headers: None });
        assert_eq!(limiter.check(&limits, &at("/closed/x"), 1).await, Verdict::Unavailable);
        assert_eq!(limiter.check(&limits, &at("/api/v1/auth/login"), 1).await, Verdict::Unavailable, "logins fail closed by default");
        let mut local = Vec::new();
        for _ in 0..4 {
            local.push(limiter.check(&limits, &at("/local/x"), 1).await);
        }
        let remaining: Vec<Option<u32>> = local
            .iter()
            .map(|v| match v {
                Verdict::Admit { headers } => headers.as_ref().map(|h| h.remaining),
                Verdict::Refuse { headers } => {
                    assert!(headers.retry_after_s.unwrap() >= 1);
                    None
                }
                Verdict::Unavailable => panic!("local fallback refused as unavailable"),
            })
            .collect();
        assert_eq!(remaining, [Some(2), Some(1), Some(0), None], "the local fallback limits as the shared count would");
        let s = limiter.metrics.snapshot();
        println!("fallbacks: {:?}; store errors {}", s.fallbacks, s.store_errors);
        assert_eq!(s.fallbacks.get("open_admitted"), Some(&1));
        assert_eq!(s.fallbacks.get("closed_refused"), Some(&2));
        assert_eq!(s.fallbacks.get("local_admitted"), Some(&3));
        assert_eq!(s.fallbacks.get("local_refused"), Some(&1));
        assert_eq!(s.limits["local"].fallbacks, 4);
        assert_eq!(s.store_errors, 7);
    });
}

#[test]
fn the_limiter_counts_in_redis_and_reports_per_limit() {
    use stagedoor_ratelimit::limiter::Verdict;
    use stagedoor_ratelimit::plan::RequestView;
    let redis = Redis::start();
    let (limiter, limits) = limiter(&redis.url(), FAIL_MODES);
    runtime().block_on(async {
        let view = RequestView { path: "/local/x", user: Some("u1"), tenant: Some("t1"), ..Default::default() };
        let mut verdicts = Vec::new();
        for _ in 0..4 {
            verdicts.push(limiter.check(&limits, &view, 1).await);
        }
        assert!(matches!(verdicts[3], Verdict::Refuse { .. }), "{verdicts:?}");
        assert!(verdicts[..3].iter().all(|v| matches!(v, Verdict::Admit { headers: Some(_) })));
        assert!(redis.cli(&["GET", "sd:rl:{u:2:t1:2:u1}:5:local"]).parse::<u64>().is_ok());
        let s = limiter.metrics.snapshot();
        assert_eq!((s.limits["local"].total, s.limits["local"].over_limit, s.limits["local"].fallbacks), (4, 1, 0));
        assert!(s.fallbacks.is_empty());
        let text = stagedoor_ratelimit::metrics::render(&s);
        assert!(text.contains("stagedoor_ratelimit_over_limit_total{limit=\"local\"} 1"), "{text}");
        assert!(text.contains("stagedoor_ratelimit_store_seconds_count 4"), "{text}");
    });
}
