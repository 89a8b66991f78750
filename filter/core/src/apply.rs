//! Applying a decision through the host: the one place that turns a [`Decision`] into
//! header writes and local replies, behind [`RequestHost`] so it is tested natively.
//!
//! Every host call can fail. A failure while the request is being changed must not let it
//! go on half-changed (a spoofed identity header removed but the verified one not set), so
//! it becomes the gateway's JSON 500; if even the reply cannot be sent, the request stays
//! paused ([`Next::Stop`]) and Envoy's stream timeout ends it. Nothing unchecked passes.

use crate::decision::{Decision, Outcome, RequestId, STATEMENT_HEADER};
use crate::reply::Denial;

/// A host call that failed, with the host's status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("host call {call} failed with status {status}")]
pub struct HostError {
    pub call: &'static str,
    pub status: u32,
}

/// The host calls a request's decision is applied with.
pub trait RequestHost {
    /// Replaces every copy of `name` (`None`: removes every copy).
    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError>;
    /// Adds a copy of `name` (cheaper than a replace: the host does not look for copies).
    fn add_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError>;
    /// Answers the request locally.
    fn send_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &str) -> Result<(), HostError>;
}

/// What the filter tells Envoy after applying a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The request goes on to the upstream.
    Continue,
    /// The request is answered (a local reply was sent) or held: it does not go on.
    Stop,
}

/// Internal errors get this code: the client did nothing wrong.
pub const HOST_FAILURE: &str = "GATEWAY_HOST_ERROR";

/// Sends the gateway's JSON error reply for `denial`.
pub fn refuse(host: &mut dyn RequestHost, denial: &Denial, request_id: &str, now_ms: i64) -> Result<(), HostError> {
    let body = denial.body(request_id, now_ms);
    let mut headers = denial.headers();
    headers.push(("content-type", "application/json"));
    host.send_reply(denial.status, &headers, &body)
}

/// Refuses, and if even that fails, keeps the request stopped: fail closed.
pub fn refuse_or_stop(host: &mut dyn RequestHost, denial: &Denial, request_id: &str, now_ms: i64) -> Next {
    // A failed reply leaves the request paused; Envoy's stream timeout ends it.
    let _ = refuse(host, denial, request_id, now_ms);
    Next::Stop
}

/// The 500 for a host call that failed mid-request.
pub fn host_failure(error: &HostError) -> Denial {
    Denial { status: 500, code: HOST_FAILURE, message: format!("The gateway could not apply its policy ({})", error.call) }
}

/// Applies a decision's header changes, or answers its denial. `Continue` means the headers
/// are exactly what the decision said; the caller may still hold the request. `now_ms` is
/// asked only for a reply's timestamp: a forwarded request reads no clock (a host call).
#[inline(never)] // one call a request, kept out of the request-headers callback (policy.rs `OUT_OF_LINE`)
pub fn apply(host: &mut dyn RequestHost, outcome: &Outcome<'_>, now_ms: &dyn Fn() -> i64) -> Next {
    let request_id = outcome.request_id.as_str();
    let written = match &outcome.request_id {
        // The replacement must reach the upstream too, whatever the decision.
        RequestId::Replaced(id) => host.set_request_header("x-request-id", Some(id)),
        RequestId::Kept(_) => Ok(()),
    };
    match (&outcome.decision, written) {
        (Decision::Deny(denial), _) => refuse_or_stop(host, denial, request_id, now_ms()),
        (Decision::Forward { .. }, Err(e)) => refuse_or_stop(host, &host_failure(&e), request_id, now_ms()),
        (decision @ Decision::Forward { .. }, Ok(())) => match write_headers(host, decision) {
            Ok(()) => Next::Continue,
            Err(e) => refuse_or_stop(host, &host_failure(&e), request_id, now_ms()),
        },
    }
}

/// Removals first, then the identity: a header the client sent is replaced (every copy at
/// once), one it did not is added (no search for copies).
fn write_headers(host: &mut dyn RequestHost, decision: &Decision<'_>) -> Result<(), HostError> {
    let Decision::Forward { remove, identity, statement, sent, .. } = decision else { return Ok(()) };
    for name in remove {
        host.set_request_header(name, None)?;
    }
    let mut put = |name: &str, value: &str| {
        if sent.contains(name) {
            host.set_request_header(name, Some(value))
        } else {
            host.add_request_header(name, value)
        }
    };
    if let Some(identity) = identity {
        for (name, value) in identity.header_values() {
            put(name, value)?;
        }
    }
    if let Some(statement) = statement {
        put(STATEMENT_HEADER, statement)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
