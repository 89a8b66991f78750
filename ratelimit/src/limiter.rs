//! One request from descriptor to verdict: plan the limits, count them in Redis, or, when
//! Redis cannot answer, apply the plan's fail mode. The only I/O is the store call.

use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::compile::CompiledLimits;
use crate::decide::{Decision, KeyedLimit};
use crate::fail_mode::{FailMode, FallbackOutcome};
use crate::gcra::Admission;
use crate::headers::{reply_headers, ReplyHeaders};
use crate::local::LocalTable;
use crate::metrics::{LimitEvent, Metrics};
use crate::plan::{plan, RequestView};
use crate::store::RedisStore;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `headers`: `None` when no enforced limit applied or the count was skipped (fail open).
    Admit { headers: Option<ReplyHeaders> },
    /// 429 with these headers (a Retry-After always among them).
    Refuse { headers: ReplyHeaders },
    /// Fail closed: no count, no admission; Envoy answers 503 for the route.
    Unavailable,
}

/// The state that outlives a registry edit: the store, the local fallback's table and the
/// counters. The limits themselves come with each request, from the registry being served.
pub struct Limiter {
    store: Option<RedisStore>,
    local: Mutex<LocalTable>,
    pub metrics: Metrics,
}

impl Limiter {
    /// `store`: `None` when no Redis is configured: every request takes its fail mode.
    /// `local_keys`: the local fallback's size (the registry's `local_fallback_keys`).
    pub fn new(store: Option<RedisStore>, local_keys: usize) -> Limiter {
        Limiter { store, local: Mutex::new(LocalTable::new(local_keys)), metrics: Metrics::default() }
    }

    pub async fn check(&self, limits: &CompiledLimits, request: &RequestView<'_>, cost: u32) -> Verdict {
        let plan = plan(limits, request);
        if plan.limits.is_empty() {
            return Verdict::Admit { headers: None };
        }
        let keyed: Vec<KeyedLimit> = plan.limits.iter().map(|(_, l)| l.clone()).collect();
        let counted = match &self.store {
            Some(store) => {
                let started = Instant::now();
                let result = store.count(&keyed, cost).await;
                self.metrics.record_store(started.elapsed(), result.is_ok());
                if let Err(e) = &result {
                    // Per request, so debug: the operator sees store_errors and the fallback
                    // counts in /metrics and /status.
                    tracing::debug!(error = %e, "rate limit store unavailable");
                }
                result.ok().map(|c| c.decision)
            }
            None => None,
        };
        let fallback = counted.is_none();
        let decision = match counted {
            Some(decision) => decision,
            None => match plan.fail_mode {
                FailMode::Open => {
                    self.metrics.record_fallback(FallbackOutcome::OpenAdmitted);
                    self.record_skipped(&plan.limits);
                    return Verdict::Admit { headers: None };
                }
                FailMode::Closed => {
                    self.metrics.record_fallback(FallbackOutcome::ClosedRefused);
                    self.record_skipped(&plan.limits);
                    return Verdict::Unavailable;
                }
                FailMode::LocalFallback => {
                    let decision = self.decide_locally(&keyed, cost);
                    let outcome = if decision.admitted { FallbackOutcome::LocalAdmitted } else { FallbackOutcome::LocalRefused };
                    self.metrics.record_fallback(outcome);
                    decision
                }
            },
        };
        self.record_decision(&plan.limits, &decision, fallback);
        let checks: Vec<_> = keyed.iter().map(|l| l.with_state(None)).collect();
        let headers = reply_headers(&checks, &decision);
        match (decision.admitted, headers) {
            (true, headers) => Verdict::Admit { headers },
            (false, Some(headers)) => Verdict::Refuse { headers },
            // Unreachable by construction (a refusal has an enforced refusing limit), and if
            // it were reached, refusing without a reset value is what the issue forbids.
            (false, None) => Verdict::Admit { headers: None },
        }
    }

    /// A signed request's signature spent once (issue 15): the first use of `digest` within
    /// `window_ms` is admitted, any other refused, across every Envoy (one GCRA key of 1 per
    /// window with a bucket of 1, in the same script call as any limit). No store, or a store
    /// that cannot answer: [`Verdict::Unavailable`], never a local guess (a replay on another
    /// replica would pass one).
    pub async fn first_use(&self, digest: &str, window_ms: u64) -> Verdict {
        let Some(rate) = crate::gcra::Rate::new(1, window_ms, 1) else { return Verdict::Unavailable };
        let Some(store) = &self.store else { return Verdict::Unavailable };
        let keyed = [KeyedLimit { key: crate::key::replay_key(digest), rate, shadow: false, count_refused: false }];
        let started = Instant::now();
        let result = store.count(&keyed, 1).await;
        self.metrics.record_store(started.elapsed(), result.is_ok());
        match result {
            Ok(counted) if counted.decision.admitted => Verdict::Admit { headers: None },
            Ok(counted) => {
                let checks: Vec<_> = keyed.iter().map(|l| l.with_state(None)).collect();
                match reply_headers(&checks, &counted.decision) {
                    Some(headers) => Verdict::Refuse { headers },
                    None => Verdict::Unavailable,
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "replay store unavailable");
                Verdict::Unavailable
            }
        }
    }

    fn decide_locally(&self, keyed: &[KeyedLimit], cost: u32) -> Decision {
        let now_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let mut table = match self.local.lock() {
            Ok(table) => table,
            Err(poisoned) => poisoned.into_inner(),
        };
        table.decide(keyed, now_us, cost)
    }

    /// Fail open or closed: the limits were not counted, only the fallback was.
    fn record_skipped(&self, limits: &[(String, KeyedLimit)]) {
        for (name, limit) in limits {
            self.metrics.record_limit(name, LimitEvent { refused: false, near: false, shadow: limit.shadow, fallback: true });
        }
    }

    fn record_decision(&self, limits: &[(String, KeyedLimit)], decision: &Decision, fallback: bool) {
        for ((name, limit), outcome) in limits.iter().zip(&decision.per_check) {
            let (refused, near) = match *outcome {
                Admission::Admitted { remaining, .. } => (false, u64::from(remaining) * 5 < u64::from(limit.rate.burst)),
                Admission::Refused { .. } => (true, false),
            };
            self.metrics.record_limit(name, LimitEvent { refused, near, shadow: limit.shadow, fallback });
        }
    }
}
