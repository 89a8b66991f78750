//! The reconnect delay every Redis loop uses (instance follower, revocation sync,
//! heartbeat): short at first so a Redis restart costs about its own length, doubling so a
//! long outage is not hammered, and bounded so recovery after one is never slow.

use std::time::Duration;

pub const FIRST: Duration = Duration::from_millis(100);
pub const LIMIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Backoff {
    /// The delay before the next attempt; each call doubles the one after, up to [`LIMIT`].
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(LIMIT);
        delay
    }

    /// After a connection that worked: the next loss starts over from [`FIRST`].
    pub fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_100_ms_to_a_2_s_bound_and_start_over_after_a_success() {
        let mut backoff = Backoff::default();
        let delays: Vec<u128> = (0..8).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1_600, 2_000, 2_000, 2_000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), FIRST);
    }
}
