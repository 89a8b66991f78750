//! The response cache (issue 14): 200 answers of registry-declared GET/HEAD routes, kept in
//! each filter VM's memory and answered from there, keyed by construction on the verified
//! identity (never on a header a client sent about who it is).
//!
//! A miss is fetched by the filter itself through the service's cluster (the request's
//! own upstream call cannot be read back: the response callbacks are trimmed from the
//! module for every route's sake), with only what the key holds: the path, the declared
//! query params, the declared headers and the verified identity. So one key is one
//! upstream request, and what is stored for a key is what any request with that key
//! would have been answered.

pub mod config;
mod events;
mod purge;
mod route;
mod storable;
mod store;

pub use events::CacheEvent;
pub use purge::{Purge, PurgeError, PURGE_PREFIX};
pub use route::{CacheKey, CacheRequest, CacheRoute, CacheRouteError};
pub use storable::is_storable;
pub use store::{Entry, Finished, Lookup, ResponseCache};

/// The request property (Envoy filter state `wasm.stagedoor_cache`) the filter sets to
/// `BYPASS` on a request of a cached route that it lets go upstream; the routes of a
/// service with cached routes answer it as `X-Cache` (the control plane's route.rs).
pub const BYPASS_FILTER_STATE: &str = "stagedoor_cache";

/// Response headers a stored or relayed answer never carries: framing (Envoy sets it for a
/// local reply) and what the gateway strips from every response.
pub fn is_relayed_header(name: &str) -> bool {
    !name.starts_with(':')
        && !matches!(name, "content-length" | "transfer-encoding" | "connection" | "keep-alive" | "age" | "x-cache" | "surrogate-key")
        && !crate::headers::response_removed_headers().any(|h| h == name)
        && !name.starts_with("x-internal-")
}

#[cfg(test)]
mod tests;
