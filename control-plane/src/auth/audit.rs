//! One JSON line per change made through the API (apply, revoke, register, deregister),
//! logged under the `stagedoor::audit` target so it can be routed on its own
//! (`STAGEDOOR_LOG=stagedoor::audit=info`).

use serde_json::{json, Value};

pub const TARGET: &str = "stagedoor::audit";

/// The line for one call: who, what, when, and the outcome (`ok`, or the refusal).
pub fn line(who: &str, action: &str, what: Value, outcome: Result<(), &tonic::Status>, at_unix_ms: u128) -> String {
    let outcome = match outcome {
        Ok(()) => json!({"result": "ok"}),
        Err(status) => json!({"result": "refused", "code": format!("{:?}", status.code()), "message": status.message()}),
    };
    json!({"at_unix_ms": at_unix_ms as u64, "who": who, "action": action, "what": what, "outcome": outcome}).to_string()
}

pub fn record(who: &str, action: &str, what: Value, outcome: Result<(), &tonic::Status>) {
    let line = line(who, action, what, outcome, crate::clock::unix_ms());
    tracing::info!(target: TARGET, "{line}");
}
