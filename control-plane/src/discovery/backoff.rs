//! The reconnect delay every Redis loop uses (instance follower, revocation sync,
//! heartbeat, registry follower): short at first so a Redis restart costs about its own
//! length, doubling so a long outage is not hammered, and bounded so recovery after one is
//! never slow.
//!
//! With Sentinel the followers wait with [`wait_to_retry`]: a failover takes seconds
//! (down-after-milliseconds, then the promotion), by which time the delay has grown towards
//! its 2 s bound, so a follower that only slept would serve the new primary up to 2 s after
//! it was named. Instead the wait asks the Sentinels (cheap: the dead primary is not
//! contacted) every [`PRIMARY_POLL`] whether they name another primary, and retries at once
//! when they do, with the delays started over for the new primary.

use std::time::Duration;

use crate::shutdown::Stop;

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

/// How often a waiting follower asks the Sentinels which primary they name.
pub const PRIMARY_POLL: Duration = Duration::from_millis(100);
/// How long one Sentinel may take to answer that.
const SENTINEL_ASK_LIMIT: Duration = Duration::from_millis(500);

/// How a wait before a retry ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The backoff's delay passed.
    Elapsed,
    /// The Sentinels named a primary other than the one lost: retry now, delays started over.
    NewPrimary,
    /// Stop requested: the loop ends.
    Stop,
}

/// Whether a wait that began with `lost` named (the primary named when the loss was seen)
/// should end because the Sentinels now name `named`. Nothing named, before or now, is no news.
pub fn is_new_primary(lost: Option<&str>, named: Option<&str>) -> bool {
    matches!((lost, named), (Some(lost), Some(named)) if lost != named)
}

/// The wait before a follower's next attempt on `url`: `backoff`'s next delay, ended early
/// for a newly named primary (a Sentinel URL; a direct one just sleeps), or by the stop.
pub async fn wait_to_retry(url: &str, backoff: &mut Backoff, stop: &Stop) -> Waited {
    let delay = backoff.next_delay();
    let parsed = stagedoor_redis::open(url).ok();
    let named = || async {
        match &parsed {
            Some(url) => url.named_primary(SENTINEL_ASK_LIMIT).await,
            None => None,
        }
    };
    let lost = named().await;
    let waited = tokio::select! {
        () = tokio::time::sleep(delay) => Waited::Elapsed,
        () = stop.clone().requested() => Waited::Stop,
        () = async {
            if lost.is_none() {
                return std::future::pending().await;
            }
            loop {
                tokio::time::sleep(PRIMARY_POLL).await;
                if is_new_primary(lost.as_deref(), named().await.as_deref()) {
                    return;
                }
            }
        } => Waited::NewPrimary,
    };
    if waited == Waited::NewPrimary {
        backoff.reset();
    }
    waited
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

    #[test]
    fn only_another_named_primary_ends_the_wait() {
        assert!(is_new_primary(Some("127.0.0.1:7001"), Some("127.0.0.1:7002")));
        assert!(!is_new_primary(Some("127.0.0.1:7001"), Some("127.0.0.1:7001")), "still the lost one");
        assert!(!is_new_primary(Some("127.0.0.1:7001"), None), "no Sentinel answered");
        assert!(!is_new_primary(None, Some("127.0.0.1:7002")), "a direct URL, or none named at the loss");
    }

    #[tokio::test]
    async fn a_direct_url_waits_the_delay_and_the_stop_ends_it() {
        let (switch, stop) = crate::shutdown::channel();
        let mut backoff = Backoff::default();
        let started = std::time::Instant::now();
        assert_eq!(wait_to_retry("redis://127.0.0.1:1", &mut backoff, &stop).await, Waited::Elapsed);
        assert!(started.elapsed() >= FIRST);
        switch.stop();
        assert_eq!(wait_to_retry("redis://127.0.0.1:1", &mut backoff, &stop).await, Waited::Stop);
    }
}
