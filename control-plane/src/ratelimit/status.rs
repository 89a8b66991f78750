//! The limiter's part of /status: every fallback decision, by outcome and by limit.

use serde_json::{json, Value};
use stagedoor_ratelimit::metrics::Snapshot;

pub fn status(s: &Snapshot) -> Value {
    let limits: serde_json::Map<String, Value> = s
        .limits
        .iter()
        .map(|(name, c)| {
            let counts = json!({
                "requests": c.total, "over_limit": c.over_limit, "near_limit": c.near_limit,
                "shadow_refusals": c.shadow_refusals, "fallbacks": c.fallbacks,
            });
            (name.clone(), counts)
        })
        .collect();
    json!({
        "fallback_decisions": s.fallbacks,
        "store_errors": s.store_errors,
        "store_calls": s.latency_count,
        "limits": limits,
    })
}
