//! Who a request is counted as, and the Redis key it is counted under.
//!
//! Only verified identity counts: `x-user-id` and `x-tenant-id` reach the limiter from the
//! filter, which sets them after checking the token and removes any client copy first (the
//! ratelimit filter runs after it). A request without them is anonymous and is counted by a
//! SHA-256 of its client address with a salt, so Redis never holds an address.

use sha2::{Digest, Sha256};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SaltError {
    #[error("must not be empty: without a salt the hash of an IPv4 address is reversed by trying all 2^32")]
    Empty,
    #[error("is {0:?}, the original gateway's fallback when its salt was unset; set a secret value")]
    KnownFallback(String),
}

/// A salt that is not empty nor one of the original's fallbacks (its `process.env.IP_SALT`
/// concatenated as the string "undefined" when unset).
#[derive(Clone, PartialEq, Eq)]
pub struct AnonymousSalt(String);

impl AnonymousSalt {
    pub fn new(salt: &str) -> Result<AnonymousSalt, SaltError> {
        if salt.trim().is_empty() {
            return Err(SaltError::Empty);
        }
        if ["undefined", "default-salt"].contains(&salt) {
            return Err(SaltError::KnownFallback(salt.to_owned()));
        }
        Ok(AnonymousSalt(salt.to_owned()))
    }
}

// The salt is a secret: never in logs.
impl std::fmt::Debug for AnonymousSalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnonymousSalt(..)")
    }
}

/// Who a request is counted as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    User { tenant: String, user: String },
    /// Hex SHA-256 of salt and client address (32 hex digits, 128 bits: no collisions in
    /// practice, half the key size).
    Address { hashed: String },
}

impl Subject {
    pub fn anonymous(salt: &AnonymousSalt, client_address: &str) -> Subject {
        let mut hasher = Sha256::new();
        hasher.update(salt.0.as_bytes());
        // A separator, so salt "ab" + address "c" differs from salt "a" + address "bc".
        hasher.update([0u8]);
        hasher.update(client_address.as_bytes());
        let digest = hasher.finalize();
        Subject::Address { hashed: hex::encode(&digest[..16]) }
    }
}

/// The Redis key for `limit` and `subject`. Every part is length-prefixed, so no user or
/// tenant id (they may hold ':') can make two subjects share a key. The braces are a Redis
/// Cluster hash tag: all of one subject's keys land in one slot, so one script call can
/// touch every limit a request is checked against.
pub fn redis_key(limit: &str, subject: &Subject) -> String {
    let part = |s: &str| format!("{}:{s}", s.len());
    match subject {
        Subject::User { tenant, user } => {
            format!("sd:rl:{{u:{}:{}}}:{}", part(tenant), part(user), part(limit))
        }
        Subject::Address { hashed } => format!("sd:rl:{{a:{hashed}}}:{}", part(limit)),
    }
}

/// The Redis key a signed request's signature is spent under (issue 15): the filter's
/// digest of the key id and the MAC, never the MAC itself. Its own prefix, so no limit's
/// key can be one; the digest is its own hash tag.
pub fn replay_key(digest: &str) -> String {
    format!("sd:replay:{{{digest}}}")
}
