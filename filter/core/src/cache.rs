//! A bounded per-VM cache of verified tokens, so the hot path skips signature checks.
//!
//! Keyed by the token through the map's keyed hash (SipHash with a per-VM random key) and
//! compared in full on lookup, so no crafted token can collide into another's entry. Only
//! tokens that verified are stored, so the cache cannot be filled with garbage. Entries are
//! re-checked for time (exp, nbf) and revocation on every hit by the caller.

use std::collections::HashMap;
use std::rc::Rc;

use crate::identity::Identity;

/// Tokens longer than this are verified every time rather than cached, bounding memory.
pub const MAX_CACHED_TOKEN_BYTES: usize = 2048;

pub struct TokenCache {
    entries: HashMap<Box<str>, Rc<Identity>>,
    capacity: usize,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        Self { entries: HashMap::with_capacity(capacity.min(1024)), capacity }
    }

    pub fn get(&self, token: &str) -> Option<Rc<Identity>> {
        self.entries.get(token).cloned()
    }

    pub fn remove(&mut self, token: &str) {
        self.entries.remove(token);
    }

    /// Stores a verified identity. When full, expired entries go first; if none had
    /// expired the cache starts over, which costs one verification per live token.
    pub fn insert(&mut self, token: &str, identity: Rc<Identity>, now: i64) {
        if self.capacity == 0 || token.len() > MAX_CACHED_TOKEN_BYTES {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, id| id.token.exp > now);
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries.insert(token.into(), identity);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
