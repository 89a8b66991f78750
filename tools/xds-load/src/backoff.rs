//! Envoy's retry delay for a lost or refused xDS stream: jittered exponential backoff
//! (`JitteredExponentialBackOffStrategy`: a random delay below `base * 2^attempt`, capped at
//! `max`; Envoy's defaults for the xDS gRPC stream are 500 ms and 30 s), so a refused
//! client of this tool comes back as a refused Envoy would. Pure: the random word is passed in.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const ENVOY_XDS: Backoff = Backoff { base: Duration::from_millis(500), max: Duration::from_secs(30) };

    /// The delay before retry number `attempt` (0 for the first retry), from a random word.
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let base_ms = u64::try_from(self.base.as_millis()).unwrap_or(u64::MAX);
        let max_ms = u64::try_from(self.max.as_millis()).unwrap_or(u64::MAX);
        let ceiling = base_ms.saturating_mul(1u64 << attempt.min(32)).min(max_ms).max(1);
        Duration::from_millis(random % ceiling)
    }
}

/// A small xorshift generator: jitter needs no cryptographic randomness.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_word(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_stays_under_the_doubling_ceiling_and_the_cap() {
        let backoff = Backoff::ENVOY_XDS;
        let mut jitter = Jitter::new(7);
        for attempt in 0..40 {
            let ceiling = Duration::from_millis(500u64.saturating_mul(1 << attempt.min(32))).min(backoff.max);
            for _ in 0..100 {
                assert!(backoff.delay(attempt, jitter.next_word()) < ceiling, "attempt {attempt}");
            }
        }
    }

    #[test]
    fn delays_are_spread_not_one_value() {
        let mut jitter = Jitter::new(1);
        let delays: std::collections::BTreeSet<Duration> = (0..50).map(|_| Backoff::ENVOY_XDS.delay(3, jitter.next_word())).collect();
        assert!(delays.len() > 25, "{delays:?}");
    }
}
