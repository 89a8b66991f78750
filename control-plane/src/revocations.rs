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
    /// Entries at or below this sequence may have been collected: a cursor older than it
    /// gets the full list.
    collected_up_to: u32,
}

/// How long a revocation lasts when the token's own expiry is unknown (a bare jti).
pub const DEFAULT_RETENTION_SECS: i64 = 24 * 3600;

impl RevocationStore {
    pub fn new(epoch: u32) -> Self {
        Self { epoch, seq: 0, entries: Vec::new(), collected_up_to: 0 }
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
    pub fn feed(&self, since: u64) -> RevocationUpdate {
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

    /// Drops entries whose tokens have expired.
    pub fn collect(&mut self, now: i64) {
        let before = self.entries.len();
        self.entries.retain(|e| e.expires_at > now);
        if self.entries.len() != before {
            self.collected_up_to = self.seq;
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
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
        assert!(!store.feed(cursor).full);
    }
}
