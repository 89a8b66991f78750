//! Polling the control plane's revocation feed as a long poll.
//!
//! Asked every 250 ms, the feed cost each idle Envoy about 1.2 million instructions a second
//! (a callout over mutual TLS per poll, four a second; bench/README.md, the idle window of
//! deployed_cost.py), and a revocation still waited up to a poll interval. Held open by the
//! control plane until something changes (or `wait_ms` passes), one poll covers seconds and
//! a revocation is answered the moment it is made.
//!
//! The filter polls again at once only after an answer that carried news. After an answer
//! without news (the wait ran out, or a control plane that does not hold polls answered at
//! once) it waits for its next tick: an old control plane is then polled as before, never in
//! a tight loop.

use std::time::Duration;

use crate::revocation::RevocationUpdate;

/// The longest hold a filter config may ask for.
pub const MAX_WAIT_MS: u64 = 30_000;

/// What the control plane pushes: short enough that the staleness gauge of a healthy
/// filter stays under 5 s, long enough that an idle filter polls 20 times less often.
pub const DEFAULT_WAIT_MS: u64 = 4_000;

/// Room beyond the hold for the answer to arrive before the callout counts as failed.
const ANSWER_MARGIN: Duration = Duration::from_secs(2);

/// The feed's path with the cursor, and the hold when there is one.
pub fn feed_path(path: &str, cursor: u64, wait_ms: u64) -> String {
    if wait_ms == 0 {
        format!("{path}?since={cursor}")
    } else {
        format!("{path}?since={cursor}&wait_ms={wait_ms}")
    }
}

/// How long the callout may take: the hold plus a margin.
pub fn callout_timeout(wait_ms: u64) -> Duration {
    Duration::from_millis(wait_ms) + ANSWER_MARGIN
}

/// The root context's tick: it times cached tokens (the coarse clock), hands metrics to
/// Envoy, releases overdue held requests and sends a feed poll when none is in flight.
/// `revocation` is the feed's (poll_interval_ms, wait_ms), if there is a feed.
///
/// Without a long poll the tick is the poll interval (capped by `metrics_flush`). With one,
/// a poll is in flight nearly all the time and the tick only finds it busy, so it need not
/// run more often than metrics are flushed: each tick is a VM entry and a clock read, an
/// idle cost (bench/README.md, the idle window).
pub fn tick_period(revocation: Option<(u64, u64)>, metrics_flush: Duration) -> Duration {
    match revocation {
        Some((poll_interval_ms, 0)) => Duration::from_millis(poll_interval_ms).min(metrics_flush),
        Some(_) | None => metrics_flush,
    }
}

/// Whether to poll again at once rather than on the next tick.
pub fn poll_again_now(wait_ms: u64, answer: &RevocationUpdate, cursor_before: u64) -> bool {
    wait_ms > 0 && (answer.full || !answer.revoked.is_empty() || answer.cursor != cursor_before)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(cursor: u64, full: bool, revoked: &[&str]) -> RevocationUpdate {
        RevocationUpdate { cursor, full, revoked: revoked.iter().map(|k| (*k).to_owned()).collect() }
    }

    #[test]
    fn the_path_carries_the_hold_only_when_there_is_one() {
        assert_eq!(feed_path("/revocations", 7, 0), "/revocations?since=7");
        assert_eq!(feed_path("/revocations", 7, 4000), "/revocations?since=7&wait_ms=4000");
    }

    #[test]
    fn the_callout_outlasts_the_hold() {
        assert_eq!(callout_timeout(0), Duration::from_secs(2));
        assert_eq!(callout_timeout(4000), Duration::from_secs(6));
    }

    #[test]
    fn a_long_poll_lets_the_tick_run_at_the_metrics_flush() {
        let flush = Duration::from_millis(500);
        assert_eq!(tick_period(Some((250, 4000)), flush), flush, "the long poll, as pushed");
        assert_eq!(tick_period(Some((250, 0)), flush), Duration::from_millis(250), "polling: every poll interval");
        assert_eq!(tick_period(Some((2000, 0)), flush), flush, "a slow poll: metrics still every flush");
        assert_eq!(tick_period(None, flush), flush, "no feed");
    }

    #[test]
    fn only_news_makes_the_filter_poll_again_at_once() {
        assert!(poll_again_now(4000, &answer(8, false, &["a"]), 7));
        assert!(poll_again_now(4000, &answer(8, true, &[]), 7));
        assert!(poll_again_now(4000, &answer(8, false, &[]), 7), "the cursor moved (entries collected)");
        assert!(!poll_again_now(4000, &answer(7, false, &[]), 7), "the hold ran out: next tick");
        assert!(!poll_again_now(0, &answer(8, false, &["a"]), 7), "no long poll: every tick, as before");
    }
}
