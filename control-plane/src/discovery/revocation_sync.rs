//! Revocations in Redis, when the control plane has one: every revoke is written there
//! (`stagedoor:revoked:<key>`, value its expiry in unix seconds, expiring with it) and
//! announced on `stagedoor:revocations`, and every control plane loads and follows them. So
//! a revoked token stays revoked across a control-plane restart, and all control planes agree.
//!
//! Redis away: revocations stay in force from memory and are written back when it returns.
//! The in-memory list is the source of that write-back: on every (re)connect, which may be
//! to a Redis restarted empty, every live entry is written again (never shortening a later
//! expiry Redis holds), then Redis's own entries are loaded; while connected, an entry a
//! revoke could not write is retried at once (the revoke wakes this loop) and every second.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;

use super::backoff::Backoff;
use crate::revocations::RevocationStore;
use crate::shutdown::Stop;

pub const KEY_PREFIX: &str = "stagedoor:revoked:";
pub const CHANNEL: &str = "stagedoor:revocations";

/// How long a connect or a command may take before Redis counts as unavailable.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// The safety net under the revoke's wake-up: entries still not in Redis are retried.
const RETRY_UNSTORED: Duration = Duration::from_secs(1);

/// Writes per pipeline: bounds one round trip's size whatever the list's.
const WRITE_BATCH: usize = 500;

/// Sets the key unless Redis holds a later expiry for it: a write (a write-back after an
/// outage, another control plane's revoke) never shortens a revocation. Returns 1 if set.
const SET_UNLESS_LATER: &str = r"
local held = tonumber(redis.call('GET', KEYS[1]))
if held and held >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
";

/// The Redis TTL (seconds) of a revocation expiring at `expires_at`; None once expired.
pub fn remaining_ttl(expires_at: i64, now: i64) -> Option<i64> {
    (expires_at > now).then_some(expires_at - now)
}

/// Where the revocation sync is woken when a revoke could not write to Redis.
#[derive(Clone, Default)]
pub struct WriteBack(Arc<Notify>);

impl WriteBack {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Writes one revocation (the revoke RPC); `expires_at` is unix seconds. Stored means on
/// the URL's `wait_replicas` replicas too, so a failover right after keeps it; fewer is an
/// error, and the revocation stays queued for the write-back (which a new primary gets).
pub async fn store(url: &str, key: &str, expires_at: i64, now: i64) -> redis::RedisResult<()> {
    let mut conn = super::redis_source::connect(url, COMMAND_TIMEOUT).await?;
    write(&mut conn, &[(key.to_owned(), expires_at.max(now + 1))], now).await?;
    let replicated = conn.replicated().await?;
    if !replicated.is_enough() {
        return Err(std::io::Error::other(format!("written to the primary, but only {replicated}")).into());
    }
    Ok(())
}

/// Writes `entries` ((key, expires_at)) with [`SET_UNLESS_LATER`] and announces the ones set.
/// Returns how many were set.
async fn write(conn: &mut stagedoor_redis::Connection, entries: &[(String, i64)], now: i64) -> redis::RedisResult<usize> {
    let mut written = 0;
    for batch in entries.chunks(WRITE_BATCH) {
        let live: Vec<(&String, i64)> =
            batch.iter().filter_map(|(key, expires_at)| Some((key, remaining_ttl(*expires_at, now)?))).collect();
        let mut sets = redis::pipe();
        for (key, ttl) in &live {
            let expires_at = now + ttl;
            sets.cmd("EVAL").arg(SET_UNLESS_LATER).arg(1).arg(format!("{KEY_PREFIX}{key}")).arg(expires_at).arg(ttl);
        }
        let set: Vec<i64> = sets.query_async(conn).await?;
        let mut announce = redis::pipe();
        let mut announced = 0;
        for ((key, _), _) in live.iter().zip(&set).filter(|(_, set)| **set == 1) {
            announce.cmd("PUBLISH").arg(CHANNEL).arg(*key).ignore();
            announced += 1;
        }
        if announced > 0 {
            announce.query_async::<()>(conn).await?;
        }
        written += announced;
    }
    Ok(written)
}

/// Writes every entry Redis does not hold yet and marks them stored. Returns how many.
async fn write_back(conn: &mut stagedoor_redis::Connection, revocations: &Mutex<RevocationStore>) -> redis::RedisResult<usize> {
    let now = crate::clock::unix_ms() as i64 / 1000;
    let (generation, unstored) =
        revocations.lock().map(|store| (store.redis_generation(), store.unstored(now))).unwrap_or_default();
    if unstored.is_empty() {
        return Ok(0);
    }
    write(conn, &unstored, now).await?;
    if let Ok(mut store) = revocations.lock() {
        for (key, expires_at) in &unstored {
            store.mark_stored(key, *expires_at, generation);
        }
    }
    Ok(unstored.len())
}

/// Writes back, loads and follows revocations; reconnects with backoff after a loss.
pub async fn follow(url: String, revocations: Arc<Mutex<RevocationStore>>, wake: WriteBack, stop: Stop) {
    let mut backoff = Backoff::default();
    while !stop.is_requested() {
        let mut synced = false;
        let error = match run(&url, &revocations, &wake, &mut synced).await {
            Ok(()) => String::from("connection closed"),
            Err(e) => e.to_string(),
        };
        // Whatever that Redis held may be gone when it comes back (no persistence, or a
        // replacement): everything is written back on the next connection.
        let pending = revocations
            .lock()
            .map(|mut store| {
                store.mark_all_unstored();
                store.len()
            })
            .unwrap_or(0);
        tracing::warn!(
            %error, pending,
            "revocations in redis unavailable; the in-memory list stays in force and is written back when redis returns"
        );
        if synced {
            backoff.reset();
        }
        if crate::discovery::backoff::wait_to_retry(&url, &mut backoff, &stop).await == crate::discovery::backoff::Waited::Stop {
            return;
        }
    }
}

async fn run(url: &str, revocations: &Mutex<RevocationStore>, wake: &WriteBack, synced: &mut bool) -> redis::RedisResult<()> {
    let primary = stagedoor_redis::open(url)?.primary(COMMAND_TIMEOUT).await?;
    let mut conn = primary.connect().await?;
    let mut pubsub = primary.pubsub().await?;
    tokio::time::timeout(COMMAND_TIMEOUT, pubsub.subscribe(CHANNEL)).await.map_err(timed_out)??;
    let mut messages = pubsub.on_message();
    // Subscribed first, so nothing announced from here on is missed; written back before
    // loading, so what this process accepted is in Redis before it reads Redis's list.
    if let Ok(mut store) = revocations.lock() {
        store.mark_all_unstored();
    }
    let written = write_back(&mut conn, revocations).await?;
    let loaded = load(&mut conn, revocations).await?;
    *synced = true;
    tracing::info!(written_back = written, learned = loaded, "revocations in redis: synced");
    let mut retry = tokio::time::interval(RETRY_UNSTORED);
    retry.tick().await;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return Ok(()) };
                let Ok(key) = message.get_payload::<String>() else { continue };
                let expires: Option<i64> = redis::cmd("GET").arg(format!("{KEY_PREFIX}{key}")).query_async(&mut conn).await?;
                if let (Some(expires_at), Ok(mut store)) = (expires, revocations.lock()) {
                    store.learn(key, expires_at);
                }
            }
            _ = wake.0.notified() => { write_back(&mut conn, revocations).await?; }
            _ = retry.tick() => { write_back(&mut conn, revocations).await?; }
        }
    }
}

/// Learns every revocation Redis holds. Returns how many were new here.
async fn load(conn: &mut stagedoor_redis::Connection, revocations: &Mutex<RevocationStore>) -> redis::RedisResult<usize> {
    let mut learned = 0;
    for key in super::scan::keys_with_prefix(conn, KEY_PREFIX).await? {
        let expires: Option<i64> = redis::cmd("GET").arg(&key).query_async(conn).await?;
        if let (Some(expires_at), Some(name), Ok(mut store)) = (expires, key.strip_prefix(KEY_PREFIX), revocations.lock()) {
            learned += usize::from(store.learn(name.to_owned(), expires_at));
        }
    }
    Ok(learned)
}

fn timed_out(_: tokio::time::error::Elapsed) -> redis::RedisError {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "redis did not answer in time").into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_is_stored_for_the_rest_of_its_life_and_an_expired_one_not_at_all() {
        assert_eq!(remaining_ttl(1_100, 1_000), Some(100));
        assert_eq!(remaining_ttl(1_001, 1_000), Some(1));
        assert_eq!(remaining_ttl(1_000, 1_000), None);
        assert_eq!(remaining_ttl(900, 1_000), None);
    }
}
