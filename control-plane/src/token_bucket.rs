//! A token bucket, pure (time passed in): the cap on new ADS streams a second
//! (`--max-new-xds-streams-per-second`, xds/server.rs, checked after the handshake) and the
//! rate of new connections admitted to their TLS handshake on the gRPC port
//! (`--max-new-xds-connections-per-second`, tls/admission.rs, before it). After a
//! control-plane restart every Envoy reconnects at once; spreading the newcomers keeps the
//! streams already served getting their pushes.

/// Allows `per_second` a second on average, at most `per_second` at once.
/// `per_second == 0` turns the cap off.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_second: u32,
    /// Thousandths of a token, so refilling by the millisecond is exact.
    milli_tokens: u64,
    last_ms: Option<u64>,
}

impl TokenBucket {
    pub fn new(per_second: u32) -> Self {
        Self { per_second, milli_tokens: u64::from(per_second) * 1000, last_ms: None }
    }

    pub fn is_off(&self) -> bool {
        self.per_second == 0
    }

    /// Whether one may go at `now_ms` (and takes its token).
    pub fn admit(&mut self, now_ms: u64) -> bool {
        if self.is_off() {
            return true;
        }
        self.refill(now_ms);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }

    /// Milliseconds from `now_ms` until [`admit`](Self::admit) would say yes (0: now).
    pub fn ms_until_token(&mut self, now_ms: u64) -> u64 {
        if self.is_off() {
            return 0;
        }
        self.refill(now_ms);
        let missing = 1000u64.saturating_sub(self.milli_tokens);
        missing.div_ceil(u64::from(self.per_second))
    }

    fn refill(&mut self, now_ms: u64) {
        let capacity = u64::from(self.per_second) * 1000;
        if let Some(last) = self.last_ms {
            let refill = now_ms.saturating_sub(last).saturating_mul(u64::from(self.per_second));
            self.milli_tokens = self.milli_tokens.saturating_add(refill).min(capacity);
        }
        self.last_ms = Some(now_ms.max(self.last_ms.unwrap_or(0)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_gets_the_cap_then_the_rate() {
        let mut rate = TokenBucket::new(10);
        let admitted = (0..1000).filter(|_| rate.admit(0)).count();
        assert_eq!(admitted, 10, "a reconnect storm gets at most the cap at once");
        assert!(!rate.admit(50), "half a token after 50 ms");
        assert!(rate.admit(100), "one a tenth of a second");
        let over_a_second = (1..=1000).filter(|i| rate.admit(100 + i)).count();
        assert_eq!(over_a_second, 10, "ten more over the next second");
    }

    #[test]
    fn zero_is_no_cap_and_time_going_back_takes_nothing() {
        let mut off = TokenBucket::new(0);
        assert!((0..10_000).all(|_| off.admit(0)));
        assert_eq!(off.ms_until_token(0), 0);
        let mut rate = TokenBucket::new(1);
        assert!(rate.admit(5_000));
        assert!(!rate.admit(1_000), "an earlier clock reading adds no token");
        assert!(rate.admit(6_000));
    }

    #[test]
    fn the_wait_it_names_is_the_wait_admit_needs() {
        for per_second in [1, 3, 7, 20, 100, 1000] {
            let mut rate = TokenBucket::new(per_second);
            while rate.admit(0) {}
            let wait = rate.ms_until_token(0);
            assert!(wait > 0, "{per_second}/s: empty after the burst");
            assert!(!rate.clone().admit(wait - 1), "{per_second}/s: not a millisecond early");
            assert!(rate.admit(wait), "{per_second}/s: a token after {wait} ms");
        }
    }
}
