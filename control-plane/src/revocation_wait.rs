//! The revocation feed as a long poll: a filter whose cursor is current is answered when
//! the list changes, or when its `wait_ms` runs out, instead of at once. An idle Envoy then
//! polls every few seconds instead of four times a second (about 1.2 million instructions a
//! second each, most of them the callout over mutual TLS), and a revocation reaches a
//! waiting filter as soon as it is made. See stagedoor_filter_core::feed_poll.
//!
//! The store is checked again every [`RECHECK`] under its lock rather than notified: its
//! writers (the API, the Redis sync, collection) stay as they are, and a check is a cursor
//! compare. A stop request ends the wait at the next check, so a held poll never delays
//! shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use stagedoor_filter_core::feed_poll::MAX_WAIT_MS;
use tokio::time::Instant;

use crate::revocations::RevocationStore;
use crate::shutdown::Stop;

/// How often a held poll looks at the store: the most a revocation waits for a held poll.
pub const RECHECK: Duration = Duration::from_millis(20);

/// Returns once the store's cursor is not `since`, `wait_ms` (capped) has passed, a stop
/// was requested, or the store's lock is poisoned (the feed then answers what it can).
pub async fn until_news(store: &Arc<Mutex<RevocationStore>>, since: u64, wait_ms: u64, stop: &Stop) {
    let deadline = Instant::now() + Duration::from_millis(wait_ms.min(MAX_WAIT_MS));
    loop {
        // A held poll is a filter polling now: /status shows it as a fresh poll.
        let Ok(cursor) = store.lock().map(|mut s| s.cursor_for_poll()) else { return };
        if cursor != since || stop.is_requested() || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(RECHECK.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Arc<Mutex<RevocationStore>> {
        Arc::new(Mutex::new(RevocationStore::new(1)))
    }

    fn current(store: &Arc<Mutex<RevocationStore>>) -> u64 {
        store.lock().unwrap().cursor_for_poll()
    }

    #[tokio::test]
    async fn a_stale_cursor_is_answered_at_once() {
        let (store, (_switch, stop)) = (store(), crate::shutdown::channel());
        let started = std::time::Instant::now();
        until_news(&store, 0, 5_000, &stop).await;
        assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_current_cursor_waits_until_a_revocation() {
        let (store, (_switch, stop)) = (store(), crate::shutdown::channel());
        let since = current(&store);
        let writer = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            writer.lock().unwrap().revoke("jti-1".into(), i64::MAX);
        });
        let started = std::time::Instant::now();
        until_news(&store, since, 10_000, &stop).await;
        let took = started.elapsed();
        eprintln!("answered {took:?} after the wait began (revoked at 200 ms)");
        assert!(took >= Duration::from_millis(150) && took < Duration::from_secs(5), "{took:?}");
        assert!(!store.lock().unwrap().feed(since).revoked.is_empty());
    }

    #[tokio::test]
    async fn a_current_cursor_is_answered_when_the_wait_runs_out() {
        let (store, (_switch, stop)) = (store(), crate::shutdown::channel());
        let since = current(&store);
        let started = std::time::Instant::now();
        until_news(&store, since, 300, &stop).await;
        let took = started.elapsed();
        eprintln!("answered after {took:?} (wait 300 ms)");
        assert!(took >= Duration::from_millis(290) && took < Duration::from_secs(5), "{took:?}");
    }

    #[tokio::test]
    async fn a_stop_request_ends_the_wait() {
        let (store, (switch, stop)) = (store(), crate::shutdown::channel());
        let since = current(&store);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            switch.stop();
        });
        let started = std::time::Instant::now();
        until_news(&store, since, 20_000, &stop).await;
        let took = started.elapsed();
        eprintln!("answered {took:?} after the wait began (stop at 100 ms)");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[tokio::test]
    async fn no_wait_is_no_wait() {
        let (store, (_switch, stop)) = (store(), crate::shutdown::channel());
        let since = current(&store);
        let started = std::time::Instant::now();
        until_news(&store, since, 0, &stop).await;
        assert!(started.elapsed() < Duration::from_millis(500), "{:?}", started.elapsed());
    }
}
