//! The registry as a versioned document in Redis, shared by every control plane that runs
//! with `--redis` (issue 17): replicas must serve one configuration, so the document in
//! Redis wins and each machine's registry file is only the seed of an empty Redis.
//!
//! Key schema (README, "Redis keys"); the `{registry}` hash tag keeps the three keys in one
//! Cluster slot, as the one script that writes them needs:
//! - `stagedoor:{registry}:version`: the current version, an integer from 1, +1 per write;
//! - `stagedoor:{registry}:hash`: the current document's content hash (the registry version);
//! - `stagedoor:{registry}:history`: the last [`DEFAULT_KEEP`] documents, newest first, JSON
//!   ([`StoredRegistry`]);
//! - channel `stagedoor:registry`: the new version number, published by the write.
//!
//! Writes are one compare-and-set script ([`store::write`]): a caller names the version it
//! based its edit on, and a stale base is refused, never a lost update.

pub mod file_edits;
pub mod follow;
pub mod store;

#[cfg(test)]
mod tests;

pub const VERSION_KEY: &str = "stagedoor:{registry}:version";
pub const HASH_KEY: &str = "stagedoor:{registry}:hash";
pub const HISTORY_KEY: &str = "stagedoor:{registry}:history";
pub const CHANNEL: &str = "stagedoor:registry";

/// Versions kept for `stagedoor history` and `stagedoor rollback`.
pub const DEFAULT_KEEP: usize = 20;

/// One version of the registry as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredRegistry {
    pub version: u64,
    /// The registry's content hash (`Registry::version`).
    pub hash: String,
    /// The YAML as applied (secrets as the applier wrote them: literal or `secret_env`).
    pub yaml: String,
    /// Who applied it: the API caller, or `seed:<file>` for the first replica's file.
    pub applied_by: String,
    pub applied_at_unix_ms: u64,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// A new version.
    New(u64),
    /// The content is the current version's: nothing written, nothing announced.
    Unchanged(u64),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the registry in redis is at version {current}, this change was based on version {base}: \
         someone else applied first; read the registry again (stagedoor apply does) and re-apply"
    )]
    Stale { current: u64, base: u64 },
    #[error("version {wanted} is not in the registry's history (kept: {kept})")]
    NotInHistory { wanted: u64, kept: String },
    #[error(
        "version {version} is written on the redis primary, but {replicated}: it may be lost if the primary \
         fails now; `stagedoor history` shows whether it stayed"
    )]
    NotReplicated { version: u64, replicated: stagedoor_redis::Replicated },
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("the registry document in redis (version {version}) is not readable: {detail}")]
    Unreadable { version: String, detail: String },
}

/// The script's decision, as a pure function of what it reads (the tests pin it; the Lua
/// in cas.lua makes the same one inside Redis, where it is atomic).
pub fn decide(current: u64, current_hash: Option<&str>, base: u64, new_hash: &str) -> Result<Written, StoreError> {
    if current != base {
        return Err(StoreError::Stale { current, base });
    }
    if current > 0 && current_hash == Some(new_hash) {
        return Ok(Written::Unchanged(current));
    }
    Ok(Written::New(current + 1))
}

/// The kept versions, as `stagedoor history` names them: "3..7" or "none".
pub fn kept_range(history: &[StoredRegistry]) -> String {
    match (history.last(), history.first()) {
        (Some(oldest), Some(newest)) => format!("{}..{}", oldest.version, newest.version),
        _ => String::from("none"),
    }
}
