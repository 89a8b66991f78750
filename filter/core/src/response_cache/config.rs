//! Cached routes as they travel from the registry to the filter (JSON): plain data, judged
//! by [`super::CacheRoute::compile`].

use serde::{Deserialize, Serialize};

/// A GET (and HEAD) route whose 200 answers each Envoy's filter keeps for `ttl_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheRouteConfig {
    /// Lower-case, `[a-z][a-z0-9-]*`; part of every key, and what a purge names.
    pub name: String,
    /// Literal and `{param}` segments, under a service's prefix: `/api/v1/events/{eventId}`.
    pub path: String,
    pub ttl_secs: u64,
    /// The query params that select the answer (only these reach the service, sorted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vary_query: Vec<String>,
    /// Request headers that select the answer (only these, besides the identity, reach the
    /// service); never an identity, credential or blocked header.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vary_headers: Vec<String>,
    /// The answer depends on who asks: the verified `sub` is part of the key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_user: bool,
    /// The answer depends on what the caller may do: the verified role and permissions are
    /// part of the key (callers with the same ones share answers).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_role: bool,
    /// How long a miss waits for the service.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Seconds past `ttl_secs` an entry is still answered (`X-Cache: STALE`) while one
    /// background fetch refreshes it; 0 (the default) answers nothing past the ttl.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stale_while_revalidate: u64,
}

/// Bounds, documented in the README ("Response cache").
pub const MAX_CACHE_ROUTES: usize = 256;
pub const MAX_TTL_SECS: u64 = 86_400;
pub const MAX_STALE_SECS: u64 = 86_400;
pub const MAX_VARY: usize = 16;
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// Per VM (one per Envoy worker thread): entries, bytes of bodies and headers, one body.
pub const MAX_ENTRIES: usize = 4096;
pub const MAX_BYTES: usize = 32 * 1024 * 1024;
pub const MAX_ENTRY_BYTES: usize = 1024 * 1024;
/// Requests that may wait on one key's fetch; more go upstream as usual.
pub const MAX_WAITERS: usize = 1024;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn default_timeout_ms() -> u64 {
    15_000
}
