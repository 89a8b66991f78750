//! Requests held until the filter knows the revocation list.
//!
//! A new VM (Envoy starting, a listener replaced, a failed VM reloaded) starts with an empty
//! list. Letting its first requests through would let a revoked token pass for the few
//! milliseconds until the first poll answers, so an authenticated request that arrives
//! before then is held: its headers are already written, and it goes on (or is refused,
//! if its token turns out revoked) the moment the list arrives. A list that does not
//! arrive within [`HOLD_LIMIT_MS`] gets the held requests a 503: never a silent pass.

use crate::decision::Decision;
use crate::policy::Policy;
use crate::reply::Denial;
use crate::revocation::RevocationList;
use crate::token::TokenError;

/// How long a request waits for the first revocation list. The first poll is sent when
/// the VM is configured and retried every tick (`feed_poll::tick_period`: 500 ms as pushed).
pub const HOLD_LIMIT_MS: u64 = 2_000;

/// At most this many requests wait per VM; more get the 503 at once (a VM that cannot
/// reach the control plane must not pile up requests without bound).
pub const MAX_HELD: usize = 1_024;

/// The revocation keys a forwarded request must still be checked against (the token's, and
/// its family's if it has one), if the list is not known yet; `None` for a request that can
/// go on now.
#[inline(never)] // kept out of the request-headers callback (policy.rs `OUT_OF_LINE`)
pub fn awaiting_revocations<'d>(policy: &Policy, list: &RevocationList, decision: &'d Decision<'_>) -> Option<(&'d str, Option<&'d str>)> {
    let Decision::Forward { identity: Some(identity), .. } = decision else { return None };
    let keys = (identity.token.revocation_key.as_str(), identity.token.family_revocation_key.as_deref());
    (policy.revocation.is_some() && !list.has_synced()).then_some(keys)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    context_id: u32,
    revocation_key: String,
    family_key: Option<String>,
    request_id: String,
    since_ms: u64,
    /// The request also waits for its webhook signature check, which lets it go itself.
    awaiting_body: bool,
}

/// What to do with a held request now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Let it go on to the upstream.
    Continue,
    /// Answer it with this denial and request id.
    Refuse(Denial, String),
    /// Nothing: its body check lets it go when the body is verified.
    LeaveToBodyCheck,
}

/// The requests a VM holds, in arrival order.
#[derive(Debug, Default)]
pub struct HeldRequests {
    held: Vec<Held>,
}

impl HeldRequests {
    /// Holds a request; `false` when [`MAX_HELD`] are waiting already.
    pub fn hold(&mut self, context_id: u32, keys: (&str, Option<&str>), request_id: &str, now_ms: u64, awaiting_body: bool) -> bool {
        if self.held.len() >= MAX_HELD {
            return false;
        }
        self.held.push(Held {
            context_id,
            revocation_key: keys.0.to_owned(),
            family_key: keys.1.map(str::to_owned),
            request_id: request_id.to_owned(),
            since_ms: now_ms,
            awaiting_body,
        });
        true
    }

    pub fn is_held(&self, context_id: u32) -> bool {
        self.held.iter().any(|h| h.context_id == context_id)
    }

    /// The request is gone (answered, or the client left).
    pub fn forget(&mut self, context_id: u32) {
        self.held.retain(|h| h.context_id != context_id);
    }

    /// The request's body was verified; it still waits for the list if this says true.
    pub fn body_checked(&mut self, context_id: u32) -> bool {
        match self.held.iter_mut().find(|h| h.context_id == context_id) {
            Some(held) => {
                held.awaiting_body = false;
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The list has arrived: every held request goes on, or is refused if revoked.
    pub fn release_all(&mut self, list: &RevocationList) -> Vec<(u32, Release)> {
        self.held
            .drain(..)
            .map(|held| {
                let release = if list.revokes(&held.revocation_key, held.family_key.as_deref()) {
                    let e = TokenError::Revoked;
                    Release::Refuse(Denial { status: 401, code: e.code(), message: e.message() }, held.request_id)
                } else if held.awaiting_body {
                    Release::LeaveToBodyCheck
                } else {
                    Release::Continue
                };
                (held.context_id, release)
            })
            .collect()
    }

    /// Requests that waited longer than [`HOLD_LIMIT_MS`]: each gets the 503.
    pub fn release_overdue(&mut self, now_ms: u64) -> Vec<(u32, Release)> {
        let (overdue, waiting): (Vec<Held>, Vec<Held>) =
            self.held.drain(..).partition(|h| now_ms.saturating_sub(h.since_ms) >= HOLD_LIMIT_MS);
        self.held = waiting;
        overdue.into_iter().map(|held| (held.context_id, Release::Refuse(revocations_unavailable(), held.request_id))).collect()
    }
}

/// The answer while the revocation list is unknown: the gateway cannot vouch for a token.
pub fn revocations_unavailable() -> Denial {
    Denial {
        status: 503,
        code: "REVOCATIONS_UNAVAILABLE",
        message: String::from("The gateway does not know the revocation list yet; try again shortly"),
    }
}

#[cfg(test)]
#[path = "hold_tests.rs"]
mod tests;
