//! How often a report of an unknown kid may make the control plane fetch an issuer's JWKS
//! again: at once if none was fetched so for the last [`REFETCH_INTERVAL`], else once that
//! interval is over, for every kid reported in between together. A kid still absent after
//! a fetch is remembered as absent for the issuer's refresh interval, so a flood of random
//! kids costs one fetch per interval at most, and a repeated one none.
//!
//! Pure: every method is a function of the state and the `now` it is given.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// At most one fetch on reports per issuer per this long.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Bounds on what the limiter remembers, so a flood cannot grow it without end.
pub const MAX_WAITING_KIDS: usize = 256;
pub const MAX_ABSENT_KIDS: usize = 4096;

/// What to do about one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnReport {
    /// Nothing: the kid is known, known to be absent, or a fetch is already due.
    Nothing,
    FetchNow,
    /// Fetch at this instant (the end of the interval), for this kid and all reported
    /// before it.
    FetchAt(Instant),
}

#[derive(Debug, Clone, Default)]
pub struct RefetchLimiter {
    last_refetch: Option<Instant>,
    /// Kids reported since the last refetch started, to be looked for in the next one.
    waiting: BTreeSet<String>,
    /// Kids being looked for by the refetch in flight.
    looking: BTreeSet<String>,
    /// Kid -> until when it counts as absent.
    absent: BTreeMap<String, Instant>,
}

impl RefetchLimiter {
    /// `known`: the issuer's last good key set has the kid (its push is on the way).
    pub fn report(&mut self, kid: &str, known: bool, now: Instant) -> OnReport {
        if known || self.looking.contains(kid) {
            return OnReport::Nothing;
        }
        if self.absent.get(kid).is_some_and(|until| *until > now) {
            return OnReport::Nothing;
        }
        let already_waiting = !self.waiting.is_empty();
        if self.waiting.len() < MAX_WAITING_KIDS {
            self.waiting.insert(kid.to_owned());
        }
        match self.due(now) {
            Some(at) if at > now => {
                if already_waiting {
                    OnReport::Nothing
                } else {
                    OnReport::FetchAt(at)
                }
            }
            _ => OnReport::FetchNow,
        }
    }

    /// When the kids waiting may be looked for (`now` or earlier: at once); None if no kid
    /// waits.
    pub fn due(&self, now: Instant) -> Option<Instant> {
        if self.waiting.is_empty() {
            return None;
        }
        Some(self.last_refetch.map_or(now, |at| at + REFETCH_INTERVAL))
    }

    /// A refetch for the waiting kids starts now.
    pub fn start(&mut self, now: Instant) {
        self.last_refetch = Some(now);
        self.looking = std::mem::take(&mut self.waiting);
    }

    /// The refetch got a key set with `kids`: the kids it looked for and did not find are
    /// absent until `now + remember_for`.
    pub fn found(&mut self, kids: &BTreeSet<String>, now: Instant, remember_for: Duration) {
        self.absent.retain(|_, until| *until > now);
        for kid in std::mem::take(&mut self.looking) {
            if !kids.contains(&kid) && self.absent.len() < MAX_ABSENT_KIDS {
                self.absent.insert(kid, now + remember_for);
            }
        }
    }

    /// The refetch failed: its kids wait for the next one (after the interval).
    pub fn failed(&mut self) {
        let looking = std::mem::take(&mut self.looking);
        for kid in looking {
            if self.waiting.len() < MAX_WAITING_KIDS {
                self.waiting.insert(kid);
            }
        }
    }

    pub fn absent_count(&self) -> usize {
        self.absent.len()
    }
}

#[cfg(test)]
#[path = "limiter_tests.rs"]
mod tests;
