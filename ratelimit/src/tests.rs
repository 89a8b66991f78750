use proptest::prelude::*;

use crate::decide::{decide, Check, KeyedLimit};
use crate::fail_mode::{default_fail_mode, FailMode};
use crate::gcra::{admit, Admission, Rate};
use crate::headers::reply_headers;
use crate::key::{redis_key, AnonymousSalt, SaltError, Subject};
use crate::local::LocalTable;

const S: u64 = 1_000_000;

fn rate(requests: u32, period_ms: u64) -> Rate {
    Rate::new(requests, period_ms, requests).unwrap()
}

/// Runs requests at `times` against one key as the store would; returns how many were admitted.
fn run(rate: &Rate, times: &[u64]) -> (usize, Option<u64>) {
    let mut tat = None;
    let mut admitted = 0;
    for &now in times {
        if let Admission::Admitted { new_tat_us, .. } = admit(rate, tat, now, 1) {
            tat = Some(new_tat_us);
            admitted += 1;
        }
    }
    (admitted, tat)
}

/// A fixed window as envoyproxy/ratelimit counts (INCRBY, EXPIRE at the window's end).
fn fixed_window_admitted(requests: u32, period_us: u64, times: &[u64]) -> usize {
    let mut window = u64::MAX;
    let mut count = 0u32;
    let mut admitted = 0;
    for &now in times {
        if now / period_us != window {
            window = now / period_us;
            count = 0;
        }
        count += 1;
        if count <= requests {
            admitted += 1;
        }
    }
    admitted
}

#[test]
fn a_rested_bucket_admits_the_burst_then_refuses() {
    let r = rate(10, 6000);
    assert_eq!(r.emission_us, 600_000);
    let (admitted, _) = run(&r, &[S; 11]);
    assert_eq!(admitted, 10);
}

#[test]
fn the_boundary_burst_is_not_admitted_twice() {
    // The case scaled down: 10/6 s, 10 requests at 5.99 s and 10 at 6.01 s.
    let r = rate(10, 6000);
    let times: Vec<u64> = [5_990_000u64; 10].into_iter().chain([6_010_000u64; 10]).collect();
    let (admitted, _) = run(&r, &times);
    assert_eq!(fixed_window_admitted(10, 6 * S, &times), 20, "the fixed window admits both bursts");
    // The bound: burst + 20 ms / 600 ms = 10.
    assert!(admitted as u64 <= r.max_admitted_within(20_000), "admitted {admitted}");
    assert_eq!(admitted, 10);
}

#[test]
fn the_bucket_recovers_one_request_per_emission_interval() {
    let r = rate(10, 6000);
    let mut times = vec![0u64; 10];
    times.extend([599_999, 600_000, 600_001, 1_200_000]);
    let (admitted, _) = run(&r, &times);
    assert_eq!(admitted, 12, "one at 600 ms, one at 1200 ms, none in between");
}

#[test]
fn refused_requests_cost_nothing_by_default() {
    let r = rate(10, 6000);
    let mut times = vec![0u64; 10];
    // Hammering while refused, then one emission interval after the burst: admitted.
    times.extend((1..100).map(|i| i * 5_000));
    times.push(600_000);
    let (admitted, _) = run(&r, &times);
    assert_eq!(admitted, 11);
}

#[test]
fn counted_refusals_keep_a_hammering_caller_out_for_a_bounded_time() {
    let r = rate(10, 6000);
    let check = |tat| Check { rate: r, tat_us: tat, shadow: false, count_refused: true };
    let mut tat = None;
    let mut admitted = 0;
    for i in 0..1000u64 {
        let now = i * 10_000; // 100/s for 10 s against 10 per 6 s
        let d = decide(&[check(tat)], now, 1);
        admitted += usize::from(d.admitted);
        if let Some(write) = d.writes[0] {
            tat = Some(write.tat_us);
        }
        assert!(tat.unwrap_or(0) <= now + r.tolerance_us() + r.period_us, "lockout bounded");
    }
    assert_eq!(admitted, 10, "only the first burst: every refusal pushed the next admission away");
    let later = tat.unwrap();
    assert!(decide(&[check(tat)], later - r.tolerance_us() + r.emission_us, 1).admitted);
}

#[test]
fn one_refusing_limit_refuses_and_writes_nothing() {
    let loose = Check { rate: rate(100, 60_000), tat_us: None, shadow: false, count_refused: false };
    let full = Check { rate: rate(1, 60_000), tat_us: Some(30 * S), shadow: false, count_refused: false };
    let d = decide(&[loose, full], S, 1);
    assert!(!d.admitted);
    assert!(d.per_check[0].is_admitted());
    assert_eq!(d.writes, vec![None, None]);
}

#[test]
fn a_shadow_refusal_admits_and_still_counts() {
    let enforced = Check { rate: rate(100, 60_000), tat_us: None, shadow: false, count_refused: false };
    let shadow = Check { rate: rate(1, 60_000), tat_us: Some(30 * S), shadow: true, count_refused: false };
    let d = decide(&[enforced, shadow], S, 1);
    assert!(d.admitted);
    assert!(!d.per_check[1].is_admitted(), "the shadow limit would have refused");
    assert!(d.writes[0].is_some() && d.writes[1].is_none());
    let h = reply_headers(&[enforced, shadow], &d).unwrap();
    assert_eq!((h.limit, h.remaining), (100, 99), "clients see the enforced limit only");
}

#[test]
fn a_refusal_carries_retry_after_and_reset() {
    let full = Check { rate: rate(10, 6000), tat_us: Some(6 * S), shadow: false, count_refused: false };
    let d = decide(&[full], 0, 1);
    let h = reply_headers(&[full], &d).unwrap();
    assert_eq!(h.remaining, 0);
    assert_eq!(h.retry_after_s, Some(1), "600 ms rounds up to 1 s");
    assert_eq!(h.reset_s, 6);
    let names: Vec<&str> = h.pairs().iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after"]);
}

#[test]
fn admitted_replies_report_the_tightest_enforced_limit() {
    let wide = Check { rate: rate(100, 60_000), tat_us: None, shadow: false, count_refused: false };
    let tight = Check { rate: rate(5, 60_000), tat_us: Some(24 * S), shadow: false, count_refused: false };
    let d = decide(&[wide, tight], 0, 1);
    assert!(d.admitted);
    let h = reply_headers(&[wide, tight], &d).unwrap();
    // 24 s ahead is two requests spent, this one the third: two of five left.
    assert_eq!((h.limit, h.remaining, h.reset_s, h.retry_after_s), (5, 2, 36, None));
}

#[test]
fn an_empty_salt_or_the_originals_fallback_is_refused() {
    assert_eq!(AnonymousSalt::new(""), Err(SaltError::Empty));
    assert_eq!(AnonymousSalt::new("  "), Err(SaltError::Empty));
    assert!(matches!(AnonymousSalt::new("undefined"), Err(SaltError::KnownFallback(_))));
    assert!(AnonymousSalt::new("s3cret").is_ok());
    assert_eq!(format!("{:?}", AnonymousSalt::new("s3cret").unwrap()), "AnonymousSalt(..)");
}

#[test]
fn anonymous_keys_hold_a_salted_hash_not_the_address() {
    let a = AnonymousSalt::new("one").unwrap();
    let b = AnonymousSalt::new("two").unwrap();
    let key = redis_key("login", &Subject::anonymous(&a, "203.0.113.7"));
    assert!(!key.contains("203.0.113.7"), "{key}");
    assert_ne!(key, redis_key("login", &Subject::anonymous(&b, "203.0.113.7")));
    assert_ne!(key, redis_key("login", &Subject::anonymous(&a, "203.0.113.8")));
    assert_eq!(key.len(), "sd:rl:{a:}:5:login".len() + 32);
}

#[test]
fn user_keys_cannot_collide_across_a_colon() {
    let user = |tenant: &str, user: &str| Subject::User { tenant: tenant.into(), user: user.into() };
    assert_ne!(redis_key("l", &user("t:1", "u")), redis_key("l", &user("t", "1:u")));
    assert_eq!(redis_key("api", &user("t1", "u1")), "sd:rl:{u:2:t1:2:u1}:3:api");
}

#[test]
fn auth_routes_fail_closed_by_default_and_others_fall_back() {
    assert_eq!(default_fail_mode("/api/v1/auth/login"), FailMode::Closed);
    assert_eq!(default_fail_mode("/api/v1/auth"), FailMode::Closed);
    assert_eq!(default_fail_mode("/api/v1/authors"), FailMode::LocalFallback);
    assert_eq!(default_fail_mode("/api/v1/events"), FailMode::LocalFallback);
}

#[test]
fn the_local_table_limits_and_stays_bounded() {
    let mut table = LocalTable::new(100);
    let check = |key: String| KeyedLimit { key, rate: rate(2, 1000), shadow: false, count_refused: false };
    let admitted = (0..3).filter(|_| table.decide(&[check("k".into())], 0, 1).admitted).count();
    assert_eq!(admitted, 2);
    for i in 0..1000 {
        table.decide(&[check(format!("k{i}"))], 1, 1);
    }
    assert!(table.len() <= 100, "{}", table.len());
}

proptest! {
    /// GCRA against a plain token bucket (level in microseconds of credit, refilled with
    /// time, capped at the burst): the same decisions for any request times.
    #[test]
    fn gcra_decides_as_a_token_bucket(
        requests in 1u32..50,
        period_ms in 1u64..10_000,
        gaps in proptest::collection::vec(0u64..2_000_000, 1..200),
    ) {
        let r = rate(requests, period_ms);
        let capacity = r.tolerance_us();
        let mut level = capacity;
        let mut last = 0u64;
        let mut tat = None;
        let mut now = 0u64;
        for gap in gaps {
            now += gap;
            level = (level + (now - last)).min(capacity);
            last = now;
            let bucket_admits = level >= r.emission_us;
            if bucket_admits {
                level -= r.emission_us;
            }
            let outcome = admit(&r, tat, now, 1);
            prop_assert_eq!(outcome.is_admitted(), bucket_admits, "at {}", now);
            if let Admission::Admitted { new_tat_us, remaining, .. } = outcome {
                tat = Some(new_tat_us);
                prop_assert_eq!(u64::from(remaining), level / r.emission_us);
            }
        }
    }

    /// The bound the e2e tests assert: within any interval, burst + interval / emission.
    #[test]
    fn no_interval_admits_more_than_burst_plus_rate(
        requests in 1u32..30,
        period_ms in 1u64..5_000,
        gaps in proptest::collection::vec(0u64..300_000, 1..300),
    ) {
        let r = rate(requests, period_ms);
        let mut tat = None;
        let mut now = 0u64;
        let mut admitted_at = Vec::new();
        for gap in gaps {
            now += gap;
            if let Admission::Admitted { new_tat_us, .. } = admit(&r, tat, now, 1) {
                tat = Some(new_tat_us);
                admitted_at.push(now);
            }
        }
        for (i, start) in admitted_at.iter().enumerate() {
            for (j, end) in admitted_at.iter().enumerate().skip(i) {
                let count = (j - i + 1) as u64;
                prop_assert!(count <= r.max_admitted_within(end - start), "{} in {} us", count, end - start);
            }
        }
    }

    /// Never a 429 without a reset and a Retry-After of at least a second.
    #[test]
    fn a_refusal_always_says_when(
        requests in 1u32..100,
        period_ms in 1u64..100_000,
        ahead_us in 0u64..200_000_000,
        now in 0u64..1_000_000_000,
    ) {
        let r = rate(requests, period_ms);
        let check = Check { rate: r, tat_us: Some(now + ahead_us), shadow: false, count_refused: false };
        let d = decide(&[check], now, 1);
        let h = reply_headers(&[check], &d).unwrap();
        if !d.admitted {
            let retry = h.retry_after_s.unwrap();
            prop_assert!(retry >= 1 && h.reset_s >= retry);
        } else {
            prop_assert!(h.retry_after_s.is_none());
        }
    }
}

/// A signature's replay slot: one per window with a bucket of one admits its first use and
/// refuses every other until the window (twice the signature's tolerance) has passed.
#[test]
fn a_replay_slot_admits_the_first_use_once_per_window() {
    let window_us = 600 * S;
    let slot = Rate::new(1, 600_000, 1).unwrap();
    let t0 = 1_000 * S;
    let (admitted, _) = run(&slot, &[t0, t0 + 1, t0 + 300 * S, t0 + window_us - 1]);
    assert_eq!(admitted, 1, "only the first use within the window");
    let (admitted, _) = run(&slot, &[t0, t0 + window_us]);
    assert_eq!(admitted, 2, "a whole window later the digest is free again (the timestamp is long expired by then)");
    assert!(crate::key::replay_key("ab").starts_with("sd:replay:{ab}"));
    assert!(!crate::key::replay_key("ab").starts_with("sd:rl:"), "no limit's key can be a replay key");
}

#[test]
fn a_replay_check_without_a_store_fails_closed() {
    let limiter = crate::limiter::Limiter::new(None, 10);
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let verdict = runtime.block_on(limiter.first_use(&"ab".repeat(32), 600_000));
    assert_eq!(verdict, crate::limiter::Verdict::Unavailable);
}
