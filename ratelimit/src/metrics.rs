//! Counters per limit and per fallback outcome, for /metrics and /status. Plain data behind
//! one mutex: a request touches it once, after its decision.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::fail_mode::FallbackOutcome;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitCounters {
    /// Requests checked against the limit.
    pub total: u64,
    /// Refused by the limit (enforced limits only).
    pub over_limit: u64,
    /// Admitted with under a fifth of the burst left (Envoy's ratelimit service uses 80 %).
    pub near_limit: u64,
    /// A shadow limit that would have refused.
    pub shadow_refusals: u64,
    /// Decided without Redis.
    pub fallbacks: u64,
}

/// Latency of the shared count, as Prometheus histogram buckets (cumulative at render).
pub const LATENCY_BUCKETS_US: [u64; 8] = [250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub limits: BTreeMap<String, LimitCounters>,
    pub fallbacks: BTreeMap<&'static str, u64>,
    /// Per bucket of `LATENCY_BUCKETS_US` (not cumulative), then the overflow.
    pub latency_buckets: [u64; 9],
    pub latency_sum_us: u64,
    pub latency_count: u64,
    pub store_errors: u64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Snapshot>,
}

/// One limit's part in one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitEvent {
    pub refused: bool,
    pub near: bool,
    pub shadow: bool,
    pub fallback: bool,
}

impl Metrics {
    pub fn record_limit(&self, name: &str, event: LimitEvent) {
        self.with(|s| {
            let c = s.limits.entry(name.to_owned()).or_default();
            c.total += 1;
            match (event.refused, event.shadow) {
                (true, true) => c.shadow_refusals += 1,
                (true, false) => c.over_limit += 1,
                (false, _) => c.near_limit += u64::from(event.near),
            }
            c.fallbacks += u64::from(event.fallback);
        });
    }

    pub fn record_fallback(&self, outcome: FallbackOutcome) {
        self.with(|s| *s.fallbacks.entry(outcome.name()).or_default() += 1);
    }

    pub fn record_store(&self, took: Duration, ok: bool) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.with(|s| {
            let bucket = LATENCY_BUCKETS_US.iter().position(|b| us <= *b).unwrap_or(LATENCY_BUCKETS_US.len());
            if let Some(slot) = s.latency_buckets.get_mut(bucket) {
                *slot += 1;
            }
            s.latency_sum_us = s.latency_sum_us.saturating_add(us);
            s.latency_count += 1;
            s.store_errors += u64::from(!ok);
        });
    }

    pub fn snapshot(&self) -> Snapshot {
        self.inner.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn with(&self, update: impl FnOnce(&mut Snapshot)) {
        // A poisoned lock only means a panic elsewhere mid-update; counters stay usable.
        let mut guard = match self.inner.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        update(&mut guard);
    }
}

/// Prometheus text for the snapshot, with the `stagedoor_ratelimit_` prefix.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let mut series = |name: &str, help: &str, kind: &str, rows: Vec<(String, u64)>| {
        out.push_str(&format!("# HELP stagedoor_ratelimit_{name} {help}\n# TYPE stagedoor_ratelimit_{name} {kind}\n"));
        for (labels, value) in rows {
            out.push_str(&format!("stagedoor_ratelimit_{name}{labels} {value}\n"));
        }
    };
    let per_limit = |f: fn(&LimitCounters) -> u64| -> Vec<(String, u64)> {
        s.limits.iter().map(|(name, c)| (format!("{{limit=\"{name}\"}}"), f(c))).collect()
    };
    series("requests_total", "Requests checked against the limit.", "counter", per_limit(|c| c.total));
    series("over_limit_total", "Requests the limit refused.", "counter", per_limit(|c| c.over_limit));
    series("near_limit_total", "Requests admitted with under a fifth of the burst left.", "counter", per_limit(|c| c.near_limit));
    series("shadow_refusals_total", "Requests a shadow limit would have refused.", "counter", per_limit(|c| c.shadow_refusals));
    series("fallbacks_total", "Requests the limit decided without Redis.", "counter", per_limit(|c| c.fallbacks));
    series(
        "fallback_decisions_total",
        "Decisions taken without Redis, by outcome.",
        "counter",
        s.fallbacks.iter().map(|(outcome, n)| (format!("{{outcome=\"{outcome}\"}}"), *n)).collect(),
    );
    series("store_errors_total", "Redis calls that failed or timed out.", "counter", vec![(String::new(), s.store_errors)]);
    out.push_str("# HELP stagedoor_ratelimit_store_seconds Latency of the one Redis call per request.\n# TYPE stagedoor_ratelimit_store_seconds histogram\n");
    let mut cumulative = 0;
    for (bound, n) in LATENCY_BUCKETS_US.iter().zip(s.latency_buckets) {
        cumulative += n;
        out.push_str(&format!("stagedoor_ratelimit_store_seconds_bucket{{le=\"{}\"}} {cumulative}\n", *bound as f64 / 1e6));
    }
    out.push_str(&format!("stagedoor_ratelimit_store_seconds_bucket{{le=\"+Inf\"}} {}\n", s.latency_count));
    out.push_str(&format!("stagedoor_ratelimit_store_seconds_sum {}\n", s.latency_sum_us as f64 / 1e6));
    out.push_str(&format!("stagedoor_ratelimit_store_seconds_count {}\n", s.latency_count));
    out
}
