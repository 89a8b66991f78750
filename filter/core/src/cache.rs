//! A bounded per-VM cache of verified tokens, so the hot path skips signature checks.
//!
//! Entries are found by a hash of the token's last 32 bytes, part of its signature, which
//! differs between any two tokens, and then compared in full, so no crafted token can take
//! another's entry. The hash is unkeyed (see [`crate::fast_bytes`]): only tokens that
//! verified are stored, and their signatures are not anyone's choice without the key, so
//! a client can neither fill the cache nor make its entries collide. Entries are
//! re-checked for time (exp, nbf) and revocation on every hit by the caller.

use std::rc::Rc;

use crate::fast_bytes::{bytes_eq, hash_bytes, FastMap};
use crate::identity::Identity;

/// Tokens longer than this are verified every time rather than cached, bounding memory.
pub const MAX_CACHED_TOKEN_BYTES: usize = 2048;

/// How many trailing bytes of a token are hashed (a base64url signature: 192 bits).
const HASHED_TAIL: usize = 32;

/// The tokens whose tails hash alike (almost always one), with their identities.
type Bucket = Vec<(Box<str>, Rc<Identity>)>;

pub struct TokenCache {
    /// Hash of the token's tail -> its bucket.
    entries: FastMap<u64, Bucket>,
    len: usize,
    capacity: usize,
}

impl TokenCache {
    pub fn new(capacity: usize) -> Self {
        let mut entries = FastMap::default();
        entries.reserve(capacity.min(1024));
        Self { entries, len: 0, capacity }
    }

    fn slot(&self, token: &str) -> u64 {
        let bytes = token.as_bytes();
        hash_bytes(&bytes[bytes.len().saturating_sub(HASHED_TAIL)..])
    }

    pub fn get(&self, token: &str) -> Option<Rc<Identity>> {
        let bucket = self.entries.get(&self.slot(token))?;
        bucket.iter().find(|(t, _)| bytes_eq(t.as_bytes(), token.as_bytes())).map(|(_, id)| id.clone())
    }

    pub fn remove(&mut self, token: &str) {
        let slot = self.slot(token);
        if let Some(bucket) = self.entries.get_mut(&slot) {
            let before = bucket.len();
            bucket.retain(|(t, _)| &**t != token);
            self.len -= before - bucket.len();
            if bucket.is_empty() {
                self.entries.remove(&slot);
            }
        }
    }

    /// Stores a verified identity. When full, expired entries go first; if none had
    /// expired the cache starts over, which costs one verification per live token.
    pub fn insert(&mut self, token: &str, identity: Rc<Identity>, now: i64) {
        if self.capacity == 0 || token.len() > MAX_CACHED_TOKEN_BYTES || self.get(token).is_some() {
            return;
        }
        if self.len >= self.capacity {
            for bucket in self.entries.values_mut() {
                bucket.retain(|(_, id)| id.token.exp > now);
            }
            self.entries.retain(|_, bucket| !bucket.is_empty());
            self.len = self.entries.values().map(Vec::len).sum();
            if self.len >= self.capacity {
                self.entries.clear();
                self.len = 0;
            }
        }
        let slot = self.slot(token);
        self.entries.entry(slot).or_default().push((token.into(), identity));
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::VerifiedToken;

    fn identity(exp: i64) -> Rc<Identity> {
        let token = VerifiedToken {
            subject: "u".into(),
            tenant: "t".into(),
            role: None,
            permissions: None,
            venues: None,
            exp,
            nbf: None,
            revocation_key: "k".into(),
            family_revocation_key: None,
        };
        Rc::new(Identity::resolve(token, &crate::defaults::roles()).unwrap())
    }

    #[test]
    fn tokens_sharing_a_signature_tail_are_still_told_apart() {
        let mut cache = TokenCache::new(8);
        let tail = "s".repeat(80);
        let a = format!("aaa.{tail}");
        let b = format!("bbb.{tail}");
        cache.insert(&a, identity(10), 0);
        assert!(cache.get(&a).is_some());
        assert!(cache.get(&b).is_none(), "same tail, different token: no hit");
        cache.insert(&b, identity(10), 0);
        assert_eq!(cache.len(), 2);
        cache.remove(&a);
        assert!(cache.get(&a).is_none() && cache.get(&b).is_some());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let mut cache = TokenCache::new(3);
        for i in 0..10 {
            cache.insert(&format!("token-{i}"), identity(if i < 2 { 1 } else { 100 }), 50);
            assert!(cache.len() <= 3);
        }
        let huge = "x".repeat(MAX_CACHED_TOKEN_BYTES + 1);
        cache.insert(&huge, identity(100), 0);
        assert!(cache.get(&huge).is_none(), "oversized tokens are not cached");
    }
}
