//! The cap on new ADS streams per second: after a control-plane restart every Envoy
//! reconnects at once, and each new stream costs a full push of every type. Streams over
//! the cap are refused with UNAVAILABLE (Envoy retries with its jittered backoff), so the
//! streams already served keep getting their pushes. A token bucket, pure (time passed in).

/// Allows `per_second` new streams a second on average, at most `per_second` at once.
/// `per_second == 0` turns the cap off.
#[derive(Debug, Clone)]
pub struct StreamRate {
    per_second: u32,
    /// Thousandths of a stream, so refilling by the millisecond is exact.
    milli_tokens: u64,
    last_ms: Option<u64>,
}

impl StreamRate {
    pub fn new(per_second: u32) -> Self {
        Self { per_second, milli_tokens: u64::from(per_second) * 1000, last_ms: None }
    }

    /// Whether a stream opening at `now_ms` may start.
    pub fn admit(&mut self, now_ms: u64) -> bool {
        if self.per_second == 0 {
            return true;
        }
        let capacity = u64::from(self.per_second) * 1000;
        if let Some(last) = self.last_ms {
            let refill = now_ms.saturating_sub(last).saturating_mul(u64::from(self.per_second));
            self.milli_tokens = self.milli_tokens.saturating_add(refill).min(capacity);
        }
        self.last_ms = Some(now_ms.max(self.last_ms.unwrap_or(0)));
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_gets_the_cap_then_the_rate() {
        let mut rate = StreamRate::new(10);
        let admitted = (0..1000).filter(|_| rate.admit(0)).count();
        assert_eq!(admitted, 10, "a reconnect storm gets at most the cap at once");
        assert!(!rate.admit(50), "half a token after 50 ms");
        assert!(rate.admit(100), "one a tenth of a second");
        let over_a_second = (1..=1000).filter(|i| rate.admit(100 + i)).count();
        assert_eq!(over_a_second, 10, "ten more over the next second");
    }

    #[test]
    fn zero_is_no_cap_and_time_going_back_takes_nothing() {
        let mut off = StreamRate::new(0);
        assert!((0..10_000).all(|_| off.admit(0)));
        let mut rate = StreamRate::new(1);
        assert!(rate.admit(5_000));
        assert!(!rate.admit(1_000), "an earlier clock reading adds no token");
        assert!(rate.admit(6_000));
    }
}
