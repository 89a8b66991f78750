//! Stagedoor's one way to reach Redis, shared by the control plane (instances, revocations,
//! the registry, refresh families) and the rate limiter (GCRA counts, replay keys): both
//! crates need the same URL forms and the same failover behaviour, and the rate limiter
//! cannot depend on the control plane, so this is its own small crate.
//!
//! - [`RedisUrl::parse`]: `redis://`, `rediss://`, `redis+sentinel://` (see [`url`]); a bad
//!   URL is an error naming the part at fault.
//! - [`RedisUrl::primary`] / [`RedisUrl::connect`]: a connection to the *current* primary
//!   (see [`primary`]); callers drop a connection after an error ([`is_lost_connection`])
//!   and the next connect follows a failover.
//! - [`Connection::replicated`]: `WAIT` for the URL's `wait_replicas` after a write a
//!   caller relies on.

pub mod primary;
pub mod url;

#[cfg(test)]
mod tests;

pub use primary::{is_lost_connection, Connection, Primary, Replicated};
pub use url::{redact, RedisUrl, UrlError};

use std::time::Duration;

/// For callers that keep the URL as text: parses it (a parse error becomes a Redis
/// client-config error with the same message) and connects to the current primary.
pub async fn connect(url: &str, timeout: Duration) -> redis::RedisResult<Connection> {
    open(url)?.connect(timeout).await
}

/// [`RedisUrl::parse`] with the error as a `RedisError`.
pub fn open(url: &str) -> redis::RedisResult<RedisUrl> {
    RedisUrl::parse(url).map_err(|e| redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "invalid redis URL", e.to_string())))
}
