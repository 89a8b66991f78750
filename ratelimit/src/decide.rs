//! One request against all of its limits at once, as the Redis script does it (the script is
//! checked against this function in `tests/script.rs`).
//!
//! All or nothing: when an enforced limit refuses, no key is written, so a refused request
//! costs the caller nothing (unless that limit counts refusals). A shadow limit is counted
//! exactly as if it were enforced, but its refusal never refuses the request.

use crate::gcra::{admit, tat_after_counted_refusal, Admission, Rate};

/// One limit a request is checked against, with the key's stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub rate: Rate,
    pub tat_us: Option<u64>,
    pub shadow: bool,
    /// Refused requests advance the TAT as admitted ones do (the original's
    /// skipFailedRequests = false, applied to refusals).
    pub count_refused: bool,
}

/// One limit of a request and the key it is counted under, before the key's state is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedLimit {
    pub key: String,
    pub rate: Rate,
    pub shadow: bool,
    pub count_refused: bool,
}

impl KeyedLimit {
    pub fn with_state(&self, tat_us: Option<u64>) -> Check {
        Check { rate: self.rate, tat_us, shadow: self.shadow, count_refused: self.count_refused }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// False when an enforced limit refused.
    pub admitted: bool,
    /// One per check, in order.
    pub per_check: Vec<Admission>,
    /// One per check: the TAT to store (and its expiry, until the bucket is full again), or
    /// `None` to leave the key as it is.
    pub writes: Vec<Option<Write>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write {
    pub tat_us: u64,
    pub ttl_us: u64,
}

pub fn decide(checks: &[Check], now_us: u64, cost: u32) -> Decision {
    let per_check: Vec<Admission> = checks.iter().map(|c| admit(&c.rate, c.tat_us, now_us, cost)).collect();
    let admitted = checks.iter().zip(&per_check).all(|(check, outcome)| check.shadow || outcome.is_admitted());
    let writes = checks
        .iter()
        .zip(&per_check)
        .map(|(check, outcome)| match *outcome {
            Admission::Admitted { new_tat_us, .. } if admitted => Some(new_tat_us),
            Admission::Refused { .. } if check.count_refused => {
                Some(tat_after_counted_refusal(&check.rate, check.tat_us, now_us, cost))
            }
            // Admitted by this limit but refused by another: nothing spent.
            Admission::Admitted { .. } | Admission::Refused { .. } => None,
        })
        .map(|tat| tat.filter(|tat| *tat > now_us).map(|tat_us| Write { tat_us, ttl_us: tat_us - now_us }))
        .collect();
    Decision { admitted, per_check, writes }
}
