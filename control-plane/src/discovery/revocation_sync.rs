//! Revocations in Redis, when the control plane has one: every revoke is written there
//! (`stagedoor:revoked:<key>`, expiring with the token) and announced on
//! `stagedoor:revocations`, and every control plane loads and follows them. So a revoked
//! token stays revoked across a control-plane restart, and all control planes agree.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;

use crate::revocations::RevocationStore;

pub const KEY_PREFIX: &str = "stagedoor:revoked:";
pub const CHANNEL: &str = "stagedoor:revocations";

/// Writes one revocation; `expires_at` is unix seconds.
pub async fn store(url: &str, key: &str, expires_at: i64, now: i64) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let ttl = (expires_at - now).max(1);
    let mut pipe = redis::pipe();
    pipe.cmd("SET").arg(format!("{KEY_PREFIX}{key}")).arg(expires_at).arg("EX").arg(ttl).ignore();
    pipe.cmd("PUBLISH").arg(CHANNEL).arg(key).ignore();
    pipe.query_async::<()>(&mut conn).await
}

/// Loads every stored revocation, then follows new ones; reconnects after a loss.
pub async fn follow(url: String, revocations: Arc<Mutex<RevocationStore>>) {
    loop {
        if let Err(e) = run(&url, &revocations).await {
            tracing::warn!(error = %e, "revocations in redis unavailable; the in-memory list stays in force");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn run(url: &str, revocations: &Arc<Mutex<RevocationStore>>) -> redis::RedisResult<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(CHANNEL).await?;
    let mut messages = pubsub.on_message();
    load(&mut conn, revocations).await?;
    while let Some(message) = messages.next().await {
        let Ok(key) = message.get_payload::<String>() else { continue };
        let expires: Option<i64> = redis::cmd("GET").arg(format!("{KEY_PREFIX}{key}")).query_async(&mut conn).await?;
        if let (Some(expires_at), Ok(mut store)) = (expires, revocations.lock()) {
            store.learn(key, expires_at);
        }
    }
    Ok(())
}

async fn load(conn: &mut redis::aio::MultiplexedConnection, revocations: &Arc<Mutex<RevocationStore>>) -> redis::RedisResult<()> {
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(format!("{KEY_PREFIX}*")).arg("COUNT").arg(1000).query_async(conn).await?;
        for key in keys {
            let expires: Option<i64> = redis::cmd("GET").arg(&key).query_async(conn).await?;
            if let (Some(expires_at), Some(name), Ok(mut store)) = (expires, key.strip_prefix(KEY_PREFIX), revocations.lock()) {
                store.learn(name.to_owned(), expires_at);
            }
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
