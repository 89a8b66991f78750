//! The revocation list as the control plane keeps it, and the change feed filters poll.
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
}

/// How long a revocation lasts when the token's own expiry is unknown (a bare jti).
pub const DEFAULT_RETENTION_SECS: i64 = 24 * 3600;

impl RevocationStore {
    pub fn new(epoch: u32) -> Self {
        Self { epoch, seq: 0, entries: Vec::new(), collected_up_to: 0, last_change_ms: None, last_poll_ms: None }
    }

    fn cursor(&self) -> u64 {
        (u64::from(self.epoch) << 32) | u64::from(self.seq)
    }

    /// Adds a key; revoking a key twice keeps the later expiry. Returns the new cursor.
    pub fn revoke(&mut self, key: String, expires_at: i64) -> u64 {
        self.seq = self.seq.saturating_add(1);
        if let Some(existing) = self.entries.iter_mut().find(|e| e.key == key) {
            existing.expires_at = existing.expires_at.max(expires_at);
            existing.seq = self.seq;
        } else {
            self.entries.push(Entry { seq: self.seq, key, expires_at });
        }
        self.last_change_ms = Some(now_ms());
        self.cursor()
    }

    /// Adds a key learned from elsewhere (Redis, another control plane) unless it is known:
    /// a reload of the same list sends filters nothing new.
    pub fn learn(&mut self, key: String, expires_at: i64) -> bool {
        if self.entries.iter().any(|e| e.key == key) {
            return false;
        }
        self.revoke(key, expires_at);
        true
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
}
