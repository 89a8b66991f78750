//! `stagedoor register --heartbeat`: keeps one instance's key alive until SIGTERM or SIGINT,
//! then deletes it.
//!
//! Redis going away is survived, not fatal: the refresh that fails drops the connection and
//! the next attempts reconnect with [`Backoff`] (100 ms doubling to 2 s, never longer than
//! the refresh interval); the first refresh that works sets the key again with its TTL and,
//! as the key was gone (a Redis restarted empty, or an outage longer than the TTL),
//! announces it, so the control plane routes to the instance again at once.

use std::time::Duration;

use super::backoff::Backoff;
use super::redis_source::{self, Instance};
use crate::shutdown::{OsSignal, OsSignals};

/// How long one Redis command may take before the connection counts as lost: a Redis that
/// hangs (stopped, or a network partition) must not stall the heartbeat for good.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    #[error("cannot listen for SIGTERM and SIGINT: {0}")]
    Signals(std::io::Error),
    #[error("first registration failed: {0}")]
    FirstRegistration(redis::RedisError),
    #[error("stopped by {signal}, but not deregistered (the key expires after its TTL): {error}")]
    Deregister { signal: OsSignal, error: redis::RedisError },
}

/// Refreshing every third of the TTL leaves two chances before the key expires.
pub fn refresh_interval(ttl: Duration) -> Duration {
    ttl.max(Duration::from_secs(1)) / 3
}

/// Registers the instance, keeps it registered across Redis restarts until SIGTERM or
/// SIGINT, then deregisters it. The first registration must work (a wrong URL or a Redis
/// that is not there is reported at once, not retried in silence); later losses are retried.
pub async fn run(url: &str, instance: &Instance, ttl: Duration) -> Result<OsSignal, HeartbeatError> {
    // Before the first registration, so a stop request during it is not lost.
    let mut signals = OsSignals::install().map_err(HeartbeatError::Signals)?;
    let record = instance.record();
    let mut conn = Some(
        redis_source::connect(url, COMMAND_TIMEOUT)
            .await
            .map_err(HeartbeatError::FirstRegistration)?,
    );
    if let Some(conn) = conn.as_mut() {
        redis_source::refresh(conn, instance, &record, ttl).await.map_err(HeartbeatError::FirstRegistration)?;
    }
    let interval = refresh_interval(ttl);
    tracing::info!(key = %instance.key(), ttl_s = ttl.as_secs(), refresh_ms = interval.as_millis(), "registered; heartbeating");

    let mut backoff = Backoff::default();
    let mut wait = interval;
    let signal = loop {
        tokio::select! {
            signal = signals.next() => break signal,
            _ = tokio::time::sleep(wait) => {}
        }
        let was_lost = conn.is_none();
        match refresh_reconnecting(url, &mut conn, instance, &record, ttl).await {
            Ok(()) => {
                if was_lost {
                    tracing::info!(key = %instance.key(), "redis is back; registered again");
                }
                backoff.reset();
                wait = interval;
            }
            Err(error) => {
                conn = None;
                wait = backoff.next_delay().min(interval);
                tracing::warn!(key = %instance.key(), %error, retry_ms = wait.as_millis(), "redis unavailable; retrying");
            }
        }
    };
    tracing::info!(%signal, "stopping: deregistering");
    redis_source::deregister(url, &instance.service, &instance.address, instance.port)
        .await
        .map_err(|error| HeartbeatError::Deregister { signal, error })?;
    Ok(signal)
}

/// One refresh, on the held connection or a new one.
async fn refresh_reconnecting(
    url: &str,
    conn: &mut Option<stagedoor_redis::Connection>,
    instance: &Instance,
    record: &str,
    ttl: Duration,
) -> redis::RedisResult<()> {
    if conn.is_none() {
        *conn = Some(redis_source::connect(url, COMMAND_TIMEOUT).await?);
    }
    match conn.as_mut() {
        Some(conn) => redis_source::refresh(conn, instance, record, ttl).await,
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_refreshed_three_times_per_ttl() {
        assert_eq!(refresh_interval(Duration::from_secs(30)), Duration::from_secs(10));
        assert_eq!(refresh_interval(Duration::from_secs(2)).as_millis(), 666);
        assert_eq!(refresh_interval(Duration::ZERO).as_millis(), 333, "a TTL under 1 s counts as 1 s");
    }
}
