//! One VM's cached answers, bounded in entries and bytes, and the fetches in flight
//! (single flight: one fetch per key, the others wait for it; a stale entry is answered
//! while one refresh renews it).

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::config::{MAX_BYTES, MAX_ENTRIES, MAX_ENTRY_BYTES, MAX_WAITERS};
use super::route::CacheKey;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What a purge matches on: the route's name, the verified tenant, the answer's
    /// `Surrogate-Key` values.
    pub route: String,
    pub tenant: String,
    pub surrogates: Vec<String>,
    pub stored_ms: u64,
    pub expires_ms: u64,
    /// Until then (from `expires_ms`) it is answered stale while it is refreshed;
    /// `expires_ms` itself for a route without stale-while-revalidate.
    pub stale_until_ms: u64,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.body.len() + self.headers.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
    }

    /// Whole seconds since it was stored (the `Age` header).
    pub fn age_secs(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.stored_ms) / 1000
    }
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    Hit(Entry),
    /// Past its ttl, within the route's stale window: answered as it is. `refresh`: nobody
    /// renews it yet, this request's lookup put its key in flight and the caller sends the
    /// one background fetch (and calls [`ResponseCache::finish`] when it ends).
    Stale { entry: Entry, refresh: bool },
    /// Another request fetches this key: this one waits for it.
    Joined,
    /// Nobody fetches it: this request does (its context is the leader now).
    Miss,
    /// Too many wait already: go upstream as usual.
    Bypass,
}

/// A fetch in flight: who waits for it, and whether a purge came while it was out.
#[derive(Debug, Default)]
struct Flight {
    /// The contexts waiting for it (the leader not included).
    waiters: Vec<u32>,
    /// A purge arrived after the fetch left: its answer may be what was purged.
    purged: bool,
}

/// What [`ResponseCache::finish`] hands back when a fetch ends.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Finished {
    pub waiters: Vec<u32>,
    /// A purge arrived while the fetch was out: its answer must not be stored, and
    /// requests that joined it must not be answered from it (they may have joined after the
    /// purge); the leader's own request began before the purge, like any proxied one.
    pub purged: bool,
}

#[derive(Debug, Default)]
pub struct ResponseCache {
    entries: HashMap<CacheKey, Entry>,
    /// Insertion order, oldest first: evicted first.
    order: VecDeque<CacheKey>,
    bytes: usize,
    /// Key -> its fetch in flight.
    in_flight: HashMap<CacheKey, Flight>,
    /// Entries evicted by the bounds since [`ResponseCache::take_evictions`], by route.
    evictions: BTreeMap<String, u64>,
}

impl ResponseCache {
    pub fn lookup(&mut self, key: &CacheKey, context_id: u32, now_ms: u64) -> Lookup {
        match self.entries.get(key) {
            Some(entry) if entry.expires_ms > now_ms => return Lookup::Hit(entry.clone()),
            Some(entry) if entry.stale_until_ms > now_ms => {
                let entry = entry.clone();
                let refresh = !self.in_flight.contains_key(key);
                if refresh {
                    self.in_flight.insert(key.clone(), Flight::default());
                }
                return Lookup::Stale { entry, refresh };
            }
            Some(_) => self.remove(key),
            None => {}
        }
        match self.in_flight.get_mut(key) {
            Some(flight) if flight.waiters.len() >= MAX_WAITERS => Lookup::Bypass,
            Some(flight) => {
                flight.waiters.push(context_id);
                Lookup::Joined
            }
            None => {
                self.in_flight.insert(key.clone(), Flight::default());
                Lookup::Miss
            }
        }
    }

    /// The fetch of `key` ended: the contexts that waited for it, and whether a purge came
    /// meanwhile.
    pub fn finish(&mut self, key: &CacheKey) -> Finished {
        let flight = self.in_flight.remove(key).unwrap_or_default();
        Finished { waiters: flight.waiters, purged: flight.purged }
    }

    /// A waiting request that went away.
    pub fn forget_waiter(&mut self, context_id: u32) {
        for flight in self.in_flight.values_mut() {
            flight.waiters.retain(|c| *c != context_id);
        }
    }

    /// Keeps `entry` under `key`, evicting the oldest entries past the bounds; an entry
    /// over [`MAX_ENTRY_BYTES`] is not kept.
    pub fn insert(&mut self, key: CacheKey, entry: Entry) -> bool {
        if entry.bytes() > MAX_ENTRY_BYTES {
            return false;
        }
        self.remove(&key);
        self.bytes += entry.bytes();
        self.entries.insert(key.clone(), entry);
        self.order.push_back(key);
        while self.entries.len() > MAX_ENTRIES || self.bytes > MAX_BYTES {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some(old) = self.entries.remove(&oldest) {
                self.bytes -= old.bytes();
                *self.evictions.entry(old.route).or_default() += 1;
            }
        }
        true
    }

    /// Drops every entry `purge` matches; returns how many. Every fetch in flight is marked
    /// purged too, whatever the purge names: its answer's surrogate keys (and so whether the
    /// purge covers it) are known only when it arrives, and an answer fetched before a purge
    /// stored after it would undo the purge.
    pub fn purge(&mut self, purge: &super::Purge) -> usize {
        for flight in self.in_flight.values_mut() {
            flight.purged = true;
        }
        let doomed: Vec<CacheKey> =
            self.entries.iter().filter(|(_, e)| purge.matches(&e.route, &e.tenant, &e.surrogates)).map(|(k, _)| k.clone()).collect();
        for key in &doomed {
            self.remove(key);
        }
        doomed.len()
    }

    fn remove(&mut self, key: &CacheKey) {
        if let Some(old) = self.entries.remove(key) {
            self.bytes -= old.bytes();
            self.order.retain(|k| k != key);
        }
    }

    /// Evictions by route since the last call (the metrics' tick reads them).
    pub fn take_evictions(&mut self) -> BTreeMap<String, u64> {
        std::mem::take(&mut self.evictions)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}
