//! The registry document's reads and its one write, over a Redis connection.

use std::time::Duration;

use stagedoor_redis::Connection;

use super::{StoreError, StoredRegistry, Written, CHANNEL, HASH_KEY, HISTORY_KEY, VERSION_KEY};

/// The compare-and-set script. Sent with EVAL each time rather than loaded once: registry
/// writes are rare and the script is small, so NOSCRIPT handling would buy nothing.
const CAS: &str = include_str!("cas.lua");

/// How long a connect or a command may take before Redis counts as unavailable.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to the current primary (with Sentinel: the one they name now).
pub async fn connect(url: &str) -> redis::RedisResult<Connection> {
    crate::discovery::redis_source::connect(url, TIMEOUT).await
}

/// What a write carries besides its version, which the script assigns.
#[derive(serde::Serialize)]
struct Unversioned<'a> {
    hash: &'a str,
    yaml: &'a str,
    applied_by: &'a str,
    applied_at_unix_ms: u64,
}

/// Writes a new version if `base` is still the current one (0: Redis holds none yet), keeps
/// the last `keep`, and announces it on [`CHANNEL`]; then waits for the URL's replicas.
pub async fn write(
    conn: &mut Connection,
    base: u64,
    hash: &str,
    yaml: &str,
    applied_by: &str,
    keep: usize,
) -> Result<Written, StoreError> {
    let document = Unversioned { hash, yaml, applied_by, applied_at_unix_ms: crate::clock::unix_ms() as u64 };
    let json = serde_json::to_string(&document).map_err(|e| StoreError::Unreadable { version: String::from("new"), detail: e.to_string() })?;
    let (outcome, version): (i64, u64) = redis::cmd("EVAL")
        .arg(CAS)
        .arg(3)
        .arg(VERSION_KEY)
        .arg(HASH_KEY)
        .arg(HISTORY_KEY)
        .arg(base)
        .arg(hash)
        .arg(json)
        .arg(keep.max(1))
        .arg(CHANNEL)
        .query_async(conn)
        .await?;
    match outcome {
        1 => {
            // Acknowledged only once on `wait_replicas` replicas: a version a caller was
            // told is written must survive the primary's loss (Sentinel promotes a replica).
            let replicated = conn.replicated().await?;
            if !replicated.is_enough() {
                return Err(StoreError::NotReplicated { version, replicated });
            }
            Ok(Written::New(version))
        }
        2 => Ok(Written::Unchanged(version)),
        _ => Err(StoreError::Stale { current: version, base }),
    }
}

/// The current version, or None while Redis holds no registry.
pub async fn current(conn: &mut Connection) -> Result<Option<StoredRegistry>, StoreError> {
    let newest: Option<String> = redis::cmd("LINDEX").arg(HISTORY_KEY).arg(0).query_async(conn).await?;
    newest.map(|text| parse(&text)).transpose()
}

/// Every kept version, newest first.
pub async fn history(conn: &mut Connection) -> Result<Vec<StoredRegistry>, StoreError> {
    let all: Vec<String> = redis::cmd("LRANGE").arg(HISTORY_KEY).arg(0).arg(-1).query_async(conn).await?;
    all.iter().map(|text| parse(text)).collect()
}

/// One kept version.
pub async fn version(conn: &mut Connection, wanted: u64) -> Result<StoredRegistry, StoreError> {
    let history = history(conn).await?;
    let kept = super::kept_range(&history);
    history.into_iter().find(|d| d.version == wanted).ok_or(StoreError::NotInHistory { wanted, kept })
}

pub fn parse(text: &str) -> Result<StoredRegistry, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Unreadable {
        version: serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("version").map(|v| v.to_string()))
            .unwrap_or_else(|| String::from("unknown")),
        detail: e.to_string(),
    })
}
