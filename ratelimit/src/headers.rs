//! The X-RateLimit-* and Retry-After values a reply carries, from one decision.
//!
//! Clients of the original read X-RateLimit-Limit/Remaining/Reset as whole numbers (Reset in
//! seconds from now, as @fastify/rate-limit sends it). The reply reports the enforced limit
//! that binds the most; shadow limits are invisible to clients.

use crate::decide::{Check, Decision};
use crate::gcra::Admission;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyHeaders {
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again, rounded up; at least 1 on a refusal.
    pub reset_s: u64,
    /// Only on a refusal: seconds until the same request would be admitted, at least 1.
    pub retry_after_s: Option<u64>,
}

impl ReplyHeaders {
    /// Header names and values, in the order they are sent.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![
            ("x-ratelimit-limit", self.limit.to_string()),
            ("x-ratelimit-remaining", self.remaining.to_string()),
            ("x-ratelimit-reset", self.reset_s.to_string()),
        ];
        if let Some(retry) = self.retry_after_s {
            pairs.push(("retry-after", retry.to_string()));
        }
        pairs
    }
}

fn whole_seconds_up(us: u64) -> u64 {
    us.div_ceil(1_000_000)
}

/// `None` when no enforced limit applied (every check was shadow, or there were none).
pub fn reply_headers(checks: &[Check], decision: &Decision) -> Option<ReplyHeaders> {
    let enforced = checks.iter().zip(&decision.per_check).filter(|(check, _)| !check.shadow);
    if decision.admitted {
        enforced
            .filter_map(|(check, outcome)| match *outcome {
                Admission::Admitted { remaining, reset_us, .. } => Some(ReplyHeaders {
                    limit: check.rate.requests,
                    remaining,
                    reset_s: whole_seconds_up(reset_us),
                    retry_after_s: None,
                }),
                Admission::Refused { .. } => None,
            })
            .min_by_key(|headers| (headers.remaining, std::cmp::Reverse(headers.reset_s)))
    } else {
        enforced
            .filter_map(|(check, outcome)| match *outcome {
                Admission::Refused { retry_after_us, reset_us } => {
                    let retry_after_s = whole_seconds_up(retry_after_us).max(1);
                    Some(ReplyHeaders {
                        limit: check.rate.requests,
                        remaining: 0,
                        reset_s: whole_seconds_up(reset_us).max(retry_after_s),
                        retry_after_s: Some(retry_after_s),
                    })
                }
                Admission::Admitted { .. } => None,
            })
            .max_by_key(|headers| headers.retry_after_s)
    }
}
