//! Hashing and comparing bytes a machine word at a time.
//!
//! Compiled to wasm, the standard library's byte comparison is libc's `memcmp`, a loop
//! over single bytes, and its `HashMap` hashes with SipHash: together they were a third of
//! the filter's own instructions per request (token compare, service prefixes, header
//! names). These do the same work eight bytes per step.
//!
//! [`WordHash`] is unkeyed. The standard `HashMap` keys SipHash so that nobody who chooses
//! the keys can make them collide; that protection is only needed where client data goes
//! *in*. The tables hashed with this one are filled from the filter config (header names)
//! or with tokens that verified (the cache, keyed by signature bytes nobody without the
//! key can choose); a client's header names and tokens are only looked up, which costs at
//! most the longest chain the config or the issuer made.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const SEED: u64 = 0xcbf2_9ce4_8422_2325;
const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// A multiply-xor hash over 8-byte words (the tail zero-padded, the length mixed in).
#[derive(Debug, Clone, Copy)]
pub struct WordHash(u64);

impl Default for WordHash {
    fn default() -> Self {
        Self(SEED)
    }
}

impl WordHash {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(MULTIPLIER).rotate_left(29);
    }
}

impl Hasher for WordHash {
    fn write(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        if n < 8 {
            self.mix(small_word(bytes) ^ ((n as u64) << 56));
            return;
        }
        let mut at = 0;
        while at + 8 < n {
            self.mix(word_at(bytes, at));
            at += 8;
        }
        // The last word may overlap the one before; the length tells such inputs apart.
        self.mix(word_at(bytes, n - 8) ^ n as u64);
    }

    fn write_u8(&mut self, byte: u8) {
        self.mix(u64::from(byte));
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn finish(&self) -> u64 {
        // Spread the high bits into the low ones the table indexes by.
        let h = self.0;
        (h ^ (h >> 32)).wrapping_mul(MULTIPLIER) ^ (h >> 29)
    }
}

/// The 8 bytes at `at` (the caller keeps `at + 8` within `bytes`).
fn word_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        word.copy_from_slice(src);
    }
    u64::from_le_bytes(word)
}

/// Fewer than 8 bytes as one word. A plain loop: copying a short tail into a buffer, or
/// comparing it as a slice, compiles to a libc call in wasm.
fn small_word(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |word, &b| (word << 8) | u64::from(b))
}

/// A `HashMap` hashed with [`WordHash`]; see the module docs for when that is safe.
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<WordHash>>;

/// [`WordHash`] of `bytes`.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut hasher = WordHash::default();
    hasher.write(bytes);
    hasher.finish()
}

/// A table of strings built once (from config) and then only read: open addressing over
/// a power-of-two array, keys compared with [`bytes_eq`]. What a `HashMap<Box<str>, V>`
/// does, without SipHash and libc's `memcmp` on every lookup.
#[derive(Debug, Clone)]
pub struct StrTable<V> {
    slots: Vec<Option<(Box<str>, V)>>,
    mask: usize,
}

impl<V: Copy> StrTable<V> {
    /// The table of `entries`; a later entry for the same key replaces an earlier one.
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a str, V)>) -> Self {
        let entries: Vec<(&str, V)> = entries.into_iter().collect();
        // At most half full, so every probe ends at an empty slot soon.
        let size = (entries.len() * 2).next_power_of_two().max(8);
        let mut table = Self { slots: vec![None; size], mask: size - 1 };
        for (key, value) in entries {
            let at = table.find(key);
            table.slots[at] = Some((key.into(), value));
        }
        table
    }

    /// The slot holding `key`, or the empty slot where it would go.
    fn find(&self, key: &str) -> usize {
        let mut at = hash_bytes(key.as_bytes()) as usize & self.mask;
        loop {
            match &self.slots[at] {
                Some((k, _)) if !bytes_eq(k.as_bytes(), key.as_bytes()) => at = (at + 1) & self.mask,
                _ => return at,
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<V> {
        self.slots[self.find(key)].as_ref().map(|(_, v)| *v)
    }
}

/// `a == b`, eight bytes per step.
pub fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return small_word(a) == small_word(b);
    }
    let mut at = 0;
    while at + 8 < n {
        if word_at(a, at) != word_at(b, at) {
            return false;
        }
        at += 8;
    }
    word_at(a, n - 8) == word_at(b, n - 8)
}

/// `text.starts_with(prefix)`, eight bytes per step.
pub fn starts_with(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len() && bytes_eq(&text.as_bytes()[..prefix.len()], prefix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn word_equality_is_equality(a in proptest::collection::vec(0u8..4, 0..40), b in proptest::collection::vec(0u8..4, 0..40)) {
            prop_assert_eq!(bytes_eq(&a, &b), a == b);
            prop_assert!(bytes_eq(&a, &a.clone()));
            let (text, prefix) = (String::from_utf8(a.iter().map(|x| b'a' + x).collect()).unwrap(),
                                  String::from_utf8(b.iter().map(|x| b'a' + x).collect()).unwrap());
            prop_assert_eq!(starts_with(&text, &prefix), text.starts_with(&prefix));
        }

        #[test]
        fn equal_bytes_hash_alike_and_the_length_counts(a in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(hash_bytes(&a), hash_bytes(&a.clone()));
            let mut longer = a.clone();
            longer.push(0);
            prop_assert_ne!(hash_bytes(&a), hash_bytes(&longer), "a zero byte more is another key");
        }
    }

    #[test]
    fn a_str_table_finds_what_it_holds_and_the_last_entry_wins() {
        let names: Vec<String> = (0..100).map(|i| format!("x-header-{i}")).collect();
        let table = StrTable::new(names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).chain([("x-header-7", 700)]));
        for (i, name) in names.iter().enumerate() {
            assert_eq!(table.get(name), Some(if i == 7 { 700 } else { i }));
        }
        assert_eq!(table.get("x-header-100"), None);
        assert_eq!(table.get(""), None);
        assert_eq!(StrTable::<u8>::new([]).get("a"), None);
    }

    #[test]
    fn a_fast_map_finds_what_it_holds() {
        let mut map: FastMap<Box<str>, u8> = FastMap::default();
        for (i, name) in ["x-a", "x-b", "authorization", "x-tenant-id"].iter().enumerate() {
            map.insert((*name).into(), i as u8);
        }
        assert_eq!(map.get("x-tenant-id"), Some(&3));
        assert_eq!(map.get("x-tenant-ids"), None);
    }
}
