//! GCRA (the generic cell rate algorithm): one stored number per key, the theoretical arrival
//! time (TAT) of the next request if the caller sent at exactly the allowed rate.
//!
//! A limit of `requests` per `period` with a bucket of `burst` requests admits a request at
//! `now` when, after it, the TAT is no further than `burst` emission intervals ahead of `now`.
//! Unlike a fixed window there is no boundary to burst across: over any interval of length
//! `W`, at most `burst + W / emission` requests are admitted (see `max_admitted_within`).
//! Times are microseconds on one clock (Redis `TIME` in production, so every replica agrees).

/// A limit compiled to the two numbers the algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// The steady spacing between admitted requests: period / requests, rounded up so the
    /// rate is never looser than configured.
    pub emission_us: u64,
    /// How many requests fit at once into a rested bucket.
    pub burst: u32,
    /// The configured figures, for the X-RateLimit-Limit header and the refusal cap.
    pub requests: u32,
    pub period_us: u64,
}

impl Rate {
    /// `None` when a figure is zero (the registry refuses those before they get here).
    pub fn new(requests: u32, period_ms: u64, burst: u32) -> Option<Rate> {
        if requests == 0 || period_ms == 0 || burst == 0 {
            return None;
        }
        let period_us = period_ms.checked_mul(1000)?;
        Some(Rate { emission_us: period_us.div_ceil(u64::from(requests)), burst, requests, period_us })
    }

    /// How far ahead of `now` a TAT may be and still admit: the whole bucket.
    pub fn tolerance_us(&self) -> u64 {
        self.emission_us.saturating_mul(u64::from(self.burst))
    }

    /// The bound a test may assert: the most requests admitted within any `window_us`.
    pub fn max_admitted_within(&self, window_us: u64) -> u64 {
        u64::from(self.burst) + window_us / self.emission_us
    }
}

/// What one request costs a key and what the key looks like after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted {
        /// Store this TAT (the key's expiry is `reset_us`: a rested bucket needs no state).
        new_tat_us: u64,
        /// Requests that would still be admitted at once after this one.
        remaining: u32,
        /// Until the bucket is full again.
        reset_us: u64,
    },
    Refused {
        /// Until this same request would be admitted; never zero.
        retry_after_us: u64,
        /// Until the bucket is full again (as it stands, without this request).
        reset_us: u64,
    },
}

impl Admission {
    pub fn is_admitted(&self) -> bool {
        matches!(self, Admission::Admitted { .. })
    }
}

/// Admits or refuses one request of `cost` at `now` against a key whose TAT is `tat_us`
/// (`None`: no state, a rested bucket).
pub fn admit(rate: &Rate, tat_us: Option<u64>, now_us: u64, cost: u32) -> Admission {
    // A TAT in the past means a rested bucket: credit does not pile up beyond `burst`.
    let base = tat_us.map_or(now_us, |tat| tat.max(now_us));
    let new_tat = base.saturating_add(rate.emission_us.saturating_mul(u64::from(cost)));
    let limit_tat = now_us.saturating_add(rate.tolerance_us());
    if new_tat <= limit_tat {
        let spare = (limit_tat - new_tat) / rate.emission_us;
        Admission::Admitted {
            new_tat_us: new_tat,
            remaining: u32::try_from(spare).unwrap_or(u32::MAX).min(rate.burst),
            reset_us: new_tat - now_us,
        }
    } else {
        Admission::Refused { retry_after_us: new_tat - limit_tat, reset_us: base - now_us }
    }
}

/// The TAT to store for a refused request when refused requests are counted against the
/// caller (`count_refused`): it advances as if admitted, capped one period beyond a full
/// bucket, so a caller who keeps sending stays refused but is locked out for a bounded time.
pub fn tat_after_counted_refusal(rate: &Rate, tat_us: Option<u64>, now_us: u64, cost: u32) -> u64 {
    let base = tat_us.map_or(now_us, |tat| tat.max(now_us));
    let advanced = base.saturating_add(rate.emission_us.saturating_mul(u64::from(cost)));
    advanced.min(now_us.saturating_add(rate.tolerance_us()).saturating_add(rate.period_us))
}
