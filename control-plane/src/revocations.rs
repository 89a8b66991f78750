//! The revocation list as the control plane keeps it, and the change feed filters poll.
//!
//! With Redis, this list is also the source of what is written back there: an entry is
//! `stored` once Redis has it, and every entry that is not is written back by the
//! revocation sync as soon as Redis is reachable again (see `discovery::revocation_sync`).
//!
//! Cursors are `epoch << 32 | sequence`. The epoch is fixed per control-plane process, so a
//! filter holding a cursor from before a restart gets the full list, not a diff against a
//! sequence that means something else now.

use stagedoor_filter_core::revocation::RevocationUpdate;

#[derive(Debug, Clone)]
struct Entry {
    seq: u32,
    key: String,
    /// After this (unix seconds) the token is dead anyway and the entry can go.
    expires_at: i64,
    /// Written to Redis with this expiry (or a later one) over the current connection.
    /// False until then, and again after a connection loss: a Redis that comes back may
    /// have come back empty, so everything is written back.
    stored: bool,
}

#[derive(Debug)]
pub struct RevocationStore {
    epoch: u32,
    seq: u32,
    entries: Vec<Entry>,
    /// Entries before this sequence may have been collected: a cursor older than it gets
    /// the full list (which is how a filter's set shrinks: it only ever adds diffs).
    collected_up_to: u32,
    /// Unix ms of the last revocation, and of the last poll of the feed (for status).
    last_change_ms: Option<u64>,
    last_poll_ms: Option<u64>,
    /// Counts Redis connections lost ([`Self::mark_all_unstored`]): a write that began on
    /// an earlier one may have gone to a Redis that is gone, so it marks nothing stored.
    redis_generation: u64,
}

/// How long a revocation lasts when the token's own expiry is unknown (a bare jti).
pub const DEFAULT_RETENTION_SECS: i64 = 24 * 3600;

impl RevocationStore {
    pub fn new(epoch: u32) -> Self {
        Self {
            epoch,
            seq: 0,
            entries: Vec::new(),
            collected_up_to: 0,
            last_change_ms: None,
            last_poll_ms: None,
            redis_generation: 0,
        }
    }

    fn cursor(&self) -> u64 {
        (u64::from(self.epoch) << 32) | u64::from(self.seq)
    }

    /// Adds a key; revoking a key twice keeps the later expiry. Returns the new cursor.
    /// A new key, or a later expiry, is not stored in Redis until [`Self::mark_stored`].
    pub fn revoke(&mut self, key: String, expires_at: i64) -> u64 {
        self.seq = self.seq.saturating_add(1);
        if let Some(existing) = self.entries.iter_mut().find(|e| e.key == key) {
            if expires_at > existing.expires_at {
                existing.expires_at = expires_at;
                existing.stored = false;
            }
            existing.seq = self.seq;
        } else {
            self.entries.push(Entry { seq: self.seq, key, expires_at, stored: false });
        }
        self.last_change_ms = Some(now_ms());
        self.cursor()
    }

    /// Adds a key read from Redis (stored there, by this or another control plane) unless
    /// it is known: a reload of the same list sends filters nothing new. A known key takes
    /// Redis's expiry when that is later.
    pub fn learn(&mut self, key: String, expires_at: i64) -> bool {
        if let Some(existing) = self.entries.iter_mut().find(|e| e.key == key) {
            existing.expires_at = existing.expires_at.max(expires_at);
            existing.stored |= expires_at >= existing.expires_at;
            return false;
        }
        self.revoke(key.clone(), expires_at);
        self.mark_stored(&key, expires_at, self.redis_generation);
        true
    }

    /// Which Redis connection a write starts on; hand it back to [`Self::mark_stored`].
    pub fn redis_generation(&self) -> u64 {
        self.redis_generation
    }

    /// A write that started in `generation` put `key` in Redis until `expires_at` or later.
    pub fn mark_stored(&mut self, key: &str, expires_at: i64, generation: u64) {
        if generation != self.redis_generation {
            return;
        }
        if let Some(entry) = self.entries.iter_mut().find(|e| e.key == key && e.expires_at <= expires_at) {
            entry.stored = true;
        }
    }

    /// The connection to Redis is lost (or new): what it held may be gone with it.
    pub fn mark_all_unstored(&mut self) {
        self.redis_generation += 1;
        for entry in &mut self.entries {
            entry.stored = false;
        }
    }

    /// Live entries Redis does not hold yet, as (key, expires_at): what to write back.
    pub fn unstored(&self, now: i64) -> Vec<(String, i64)> {
        self.entries
            .iter()
            .filter(|e| !e.stored && e.expires_at > now)
            .map(|e| (e.key.clone(), e.expires_at))
            .collect()
    }

    /// How many entries wait to be written to Redis (for status).
    pub fn pending_write_back(&self) -> usize {
        self.entries.iter().filter(|e| !e.stored).count()
    }

    /// The cursor a poll compares its own with, counting as a poll of the feed (for status).
    pub fn cursor_for_poll(&mut self) -> u64 {
        self.last_poll_ms = Some(now_ms());
        self.cursor()
    }

    /// What a filter holding `since` needs.
    pub fn feed(&mut self, since: u64) -> RevocationUpdate {
        self.last_poll_ms = Some(now_ms());
        let (epoch, seq) = ((since >> 32) as u32, since as u32);
        let full = epoch != self.epoch || seq < self.collected_up_to || seq > self.seq;
        let revoked = self
            .entries
            .iter()
            .filter(|e| full || e.seq > seq)
            .map(|e| e.key.clone())
            .collect();
        RevocationUpdate { cursor: self.cursor(), full, revoked }
    }

    /// Drops entries whose tokens have expired. The cursor moves on, and every cursor from
    /// before gets the full list once, so filters drop the entries too (a filter that only
    /// ever received diffs would hold them forever).
    pub fn collect(&mut self, now: i64) {
        let before = self.entries.len();
        self.entries.retain(|e| e.expires_at > now);
        if self.entries.len() != before {
            self.seq = self.seq.saturating_add(1);
            self.collected_up_to = self.seq;
        }
    }

    /// (unix ms of the last revocation, unix ms of the last poll of the feed).
    pub fn activity(&self) -> (Option<u64>, Option<u64>) {
        (self.last_change_ms, self.last_poll_ms)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_a_known_key_changes_nothing() {
        let mut store = RevocationStore::new(1);
        assert!(store.learn("a".into(), 100));
        let cursor = store.feed(0).cursor;
        assert!(!store.learn("a".into(), 100));
        assert_eq!(store.feed(cursor).revoked, Vec::<String>::new());
    }

    #[test]
    fn a_new_filter_gets_everything_then_only_changes() {
        let mut store = RevocationStore::new(7);
        store.revoke("a".into(), 100);
        let first = store.feed(0);
        assert!(first.full);
        assert_eq!(first.revoked, ["a"]);
        assert_eq!(store.feed(first.cursor).revoked, Vec::<String>::new());
        let c = store.revoke("b".into(), 100);
        let next = store.feed(first.cursor);
        assert!(!next.full);
        assert_eq!(next.revoked, ["b"]);
        assert_eq!(next.cursor, c);
    }

    #[test]
    fn a_cursor_from_another_epoch_or_before_collection_gets_the_full_list() {
        let mut old = RevocationStore::new(1);
        old.revoke("x".into(), 100);
        let stale_cursor = old.feed(0).cursor;
        let mut store = RevocationStore::new(2);
        store.revoke("a".into(), 10);
        store.revoke("b".into(), 100);
        assert!(store.feed(stale_cursor).full);
        let cursor = store.feed(0).cursor;
        store.collect(50);
        assert_eq!(store.len(), 1);
        let after = store.feed((2u64 << 32) | 1);
        assert!(after.full, "entries were collected since that cursor");
        assert_eq!(after.revoked, ["b"]);
        assert!(store.feed(cursor).full, "an up-to-date filter gets the shrunk list too");
        assert!(!store.feed(after.cursor).full, "once");
    }

    #[test]
    fn an_up_to_date_filter_drops_expired_entries_once_and_then_gets_diffs_again() {
        use stagedoor_filter_core::revocation::RevocationList;
        let mut store = RevocationStore::new(3);
        let mut filter = RevocationList::default();
        for (i, exp) in [10, 20, 1_000].into_iter().enumerate() {
            store.revoke(format!("k{i}"), exp);
            filter.apply(store.feed(filter.cursor()));
        }
        assert_eq!(filter.len(), 3);
        store.collect(100);
        let update = store.feed(filter.cursor());
        assert!(update.full);
        filter.apply(update);
        assert_eq!(filter.len(), 1, "the filter's set is bounded by the live revocations");
        assert!(filter.is_revoked("k2"));
        assert!(store.feed(filter.cursor()).revoked.is_empty());
        store.revoke("k3".into(), 1_000);
        let next = store.feed(filter.cursor());
        assert!(!next.full);
        assert_eq!(next.revoked, ["k3"]);
    }

    #[test]
    fn what_redis_does_not_hold_is_written_back_and_a_lost_connection_means_all_of_it() {
        let mut store = RevocationStore::new(1);
        store.revoke("a".into(), 100);
        store.revoke("b".into(), 100);
        store.revoke("old".into(), 5);
        assert_eq!(store.unstored(10), [("a".to_owned(), 100), ("b".to_owned(), 100)], "expired entries are not written");
        store.mark_stored("a", 100, 0);
        assert_eq!(store.unstored(10), [("b".to_owned(), 100)]);
        assert_eq!(store.pending_write_back(), 2, "b and the expired one, until it is collected");
        store.mark_stored("b", 50, 0);
        assert_eq!(store.unstored(10), [("b".to_owned(), 100)], "stored with a shorter expiry is not stored");
        store.mark_stored("b", 200, 0);
        assert!(store.unstored(10).is_empty());

        store.revoke("a".into(), 300);
        assert_eq!(store.unstored(10), [("a".to_owned(), 300)], "a later expiry is written again");
        store.mark_stored("a", 300, 0);
        store.revoke("a".into(), 150);
        assert!(store.unstored(10).is_empty(), "an earlier expiry changes nothing");

        let before_the_loss = store.redis_generation();
        store.mark_all_unstored();
        assert_eq!(store.unstored(10), [("a".to_owned(), 300), ("b".to_owned(), 100)], "a Redis that comes back empty gets everything");
        store.mark_stored("a", 300, before_the_loss);
        assert_eq!(store.unstored(10).len(), 2, "a write to the Redis that was lost counts for nothing");
        store.mark_stored("a", 300, store.redis_generation());
        assert_eq!(store.unstored(10), [("b".to_owned(), 100)]);
    }

    #[test]
    fn what_is_learned_from_redis_is_stored_there() {
        let mut store = RevocationStore::new(1);
        assert!(store.learn("a".into(), 100));
        assert!(store.unstored(0).is_empty());
        store.revoke("b".into(), 100);
        assert!(!store.learn("b".into(), 50), "known");
        assert_eq!(store.unstored(0), [("b".to_owned(), 100)], "Redis holds it with a shorter expiry only");
        assert!(!store.learn("b".into(), 400));
        assert!(store.unstored(0).is_empty());
        store.collect(200);
        assert_eq!(store.len(), 1, "the learned later expiry counts");
    }
}
