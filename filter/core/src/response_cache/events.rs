//! What happened to a request on a cached route, or to an entry: one counter per route
//! and kind (`stagedoor_response_cache_<kind>.<route>`, as the shadow counters name their
//! rule after a dot), so the label count is bounded by
//! the registry's routes ([`super::config::MAX_CACHE_ROUTES`]) times [`CacheEvent::ALL`].

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CacheEvent {
    /// Answered from memory, fresh.
    Hit,
    /// Answered from memory past its ttl, within the stale window.
    Stale,
    /// Fetched for this request (it led its key's fetch).
    Miss,
    /// Waited for another request's fetch of its key (single flight).
    Joined,
    /// Neither served from nor stored in the cache (`X-Cache: BYPASS`).
    Bypass,
    /// A fetched answer kept.
    Store,
    /// An entry dropped to stay within the bounds.
    Eviction,
}

impl CacheEvent {
    pub const ALL: [CacheEvent; 7] =
        [Self::Hit, Self::Stale, Self::Miss, Self::Joined, Self::Bypass, Self::Store, Self::Eviction];

    pub fn index(self) -> usize {
        self as usize
    }

    /// The metric name's last part.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hit => "hits",
            Self::Stale => "stale_hits",
            Self::Miss => "misses",
            Self::Joined => "waiters_joined",
            Self::Bypass => "bypasses",
            Self::Store => "stores",
            Self::Eviction => "evictions",
        }
    }

    /// The counter of this event on `route` (a route name is `[a-z0-9-]`, so it stays one
    /// stat-name segment).
    pub fn metric_name(self, route: &str) -> String {
        format!("stagedoor_response_cache_{}.{route}", self.name())
    }
}
