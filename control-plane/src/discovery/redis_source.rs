//! Follows live instances in Redis and hands them to the publisher. The only I/O here.
//!
//! Redis down: the last known instances stay in EDS, the condition is logged and counted in
//! /status, and the loop reconnects with backoff; on reconnect a full rescan catches up.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;

use super::backoff::Backoff;
use super::{collect, CHANNEL, KEY_PREFIX};
use crate::registry::LiveInstances;
use crate::shared_publisher::SharedPublisher;
use crate::shutdown::Stop;

/// Full rescan interval: the safety net under notifications.
const RESYNC: Duration = Duration::from_secs(10);
/// A notification rescans at once; the ones within this window after a rescan make one
/// more rescan when it ends: a burst (many instances expiring together, a fleet
/// registering at once) costs two SCANs, not one each, and a lone change waits for none.
const DEBOUNCE: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Default, Serialize)]
pub struct DiscoveryStatus {
    pub redis_url: String,
    pub connected: bool,
    pub errors: u64,
    pub last_error: Option<String>,
    pub last_sync_unix_ms: Option<u128>,
    pub live_instances: usize,
    /// Full scans of the instance keys so far (notifications are coalesced into these).
    pub rescans: u64,
}

pub type SharedStatus = Arc<std::sync::Mutex<DiscoveryStatus>>;

pub async fn follow(url: String, publisher: SharedPublisher, status: SharedStatus, stop: Stop) {
    if let Ok(mut s) = status.lock() {
        s.redis_url = redact(&url);
    }
    let mut backoff = Backoff::default();
    while !stop.is_requested() {
        let error = match run(&url, &publisher, &status).await {
            Ok(()) => String::from("connection closed"),
            Err(e) => e.to_string(),
        };
        tracing::warn!(redis = %redact(&url), %error, "redis unavailable; keeping the last known instances");
        let was_connected = status.lock().map(|mut s| {
            let was = s.connected;
            s.connected = false;
            s.errors += 1;
            s.last_error = Some(error);
            was
        });
        // A connection that worked starts the delays over: a Redis restart hours after the
        // last one is retried after 100 ms, not after the longest delay.
        if was_connected.unwrap_or(false) {
            backoff.reset();
        }
        if crate::discovery::backoff::wait_to_retry(&url, &mut backoff, &stop).await == crate::discovery::backoff::Waited::Stop {
            return;
        }
    }
}

/// How long a connect or a command may take before Redis counts as unavailable.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

async fn run(url: &str, publisher: &SharedPublisher, status: &SharedStatus) -> redis::RedisResult<()> {
    // The primary found now (with Sentinel: the one they name); after a failover the
    // connection drops and the next run finds the new one.
    let primary = stagedoor_redis::open(url)?.primary(COMMAND_TIMEOUT).await?;
    let mut conn = primary.connect().await?;
    // Expiry and deletion events let the control plane see an instance that stopped
    // heartbeating right away. Managed Redis may refuse CONFIG; the rescan still works.
    let notify: redis::RedisResult<()> =
        redis::cmd("CONFIG").arg("SET").arg("notify-keyspace-events").arg("Egx").query_async(&mut conn).await;
    if let Err(e) = notify {
        tracing::warn!(error = %e, "cannot enable keyspace events; relying on the channel and the 10 s rescan");
    }
    let mut pubsub = primary.pubsub().await?;
    let subscribed = async {
        pubsub.subscribe(CHANNEL).await?;
        pubsub.psubscribe("__keyevent@*__:expired").await?;
        pubsub.psubscribe("__keyevent@*__:del").await
    };
    tokio::time::timeout(COMMAND_TIMEOUT, subscribed).await.map_err(|_| timed_out())??;
    let mut messages = pubsub.on_message();
    tracing::info!(redis = %redact(url), "following live instances");
    resync(&mut conn, publisher, status).await?;
    let mut ticker = tokio::time::interval(RESYNC);
    ticker.tick().await;
    // While a window after a rescan is open: when it ends, and whether a notification
    // came in it (a rescan is due then).
    let mut window: Option<(tokio::time::Instant, bool)> = None;
    loop {
        let due = window.map(|(at, _)| at);
        let debounce = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return Ok(()) };
                let relevant = message.get_channel_name() == CHANNEL
                    || message.get_payload::<String>().is_ok_and(|key| key.starts_with(KEY_PREFIX));
                if !relevant {
                    continue;
                }
                match &mut window {
                    Some((_, pending)) => *pending = true,
                    None => {
                        resync(&mut conn, publisher, status).await?;
                        window = Some((tokio::time::Instant::now() + DEBOUNCE, false));
                    }
                }
            }
            _ = debounce => {
                let pending = window.is_some_and(|(_, pending)| pending);
                window = None;
                if pending {
                    resync(&mut conn, publisher, status).await?;
                    window = Some((tokio::time::Instant::now() + DEBOUNCE, false));
                }
            }
            _ = ticker.tick() => {
                resync(&mut conn, publisher, status).await?;
                window = Some((tokio::time::Instant::now() + DEBOUNCE, false));
            }
        }
    }
}

async fn resync(
    conn: &mut stagedoor_redis::Connection,
    publisher: &SharedPublisher,
    status: &SharedStatus,
) -> redis::RedisResult<()> {
    let live = scan(conn).await?;
    let count = live.values().map(|s| s.len()).sum();
    if let Ok(mut s) = status.lock() {
        s.connected = true;
        s.last_sync_unix_ms = Some(crate::clock::unix_ms());
        s.live_instances = count;
        s.rescans += 1;
    }
    match publisher.update(|p| p.set_live_instances(live)).await {
        Ok(true) => tracing::info!(instances = count, "live instances changed; pushing EDS"),
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "live instances rejected; keeping the last snapshot"),
    }
    Ok(())
}

async fn scan(conn: &mut stagedoor_redis::Connection) -> redis::RedisResult<LiveInstances> {
    Ok(collect(super::scan::keys_with_prefix(conn, KEY_PREFIX).await?))
}

/// A Redis URL without its passwords, for logs and status.
pub use stagedoor_redis::redact;

fn timed_out() -> redis::RedisError {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "redis did not answer in time").into()
}

/// One instance as it registers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub service: String,
    pub address: String,
    pub port: u16,
}

impl Instance {
    pub fn key(&self) -> String {
        super::instance_key(&self.service, &self.address, self.port)
    }

    /// The key's value: informational, the key itself is what counts.
    pub fn record(&self) -> String {
        serde_json::json!({
            "service": self.service, "address": self.address, "port": self.port,
            "registered_at": crate::clock::unix_ms() / 1000,
        })
        .to_string()
    }
}

/// A connection to the current primary whose connect and every command give up after
/// `timeout`: a hung Redis is an error the caller can retry, not a wait forever.
pub async fn connect(url: &str, timeout: Duration) -> redis::RedisResult<stagedoor_redis::Connection> {
    stagedoor_redis::connect(url, timeout).await
}

/// Sets the instance's key with its TTL; announces it only when the key was not there (a
/// new instance, or one Redis lost), so a plain heartbeat makes the control plane rescan
/// nothing. `SET .. GET` needs Redis 6.2.
pub async fn refresh(
    conn: &mut stagedoor_redis::Connection,
    instance: &Instance,
    record: &str,
    ttl: Duration,
) -> redis::RedisResult<()> {
    let previous: Option<String> =
        redis::cmd("SET").arg(instance.key()).arg(record).arg("EX").arg(ttl.as_secs().max(1)).arg("GET").query_async(conn).await?;
    if previous.is_none() {
        redis::cmd("PUBLISH").arg(CHANNEL).arg(&instance.service).query_async::<()>(conn).await?;
    }
    Ok(())
}

/// How long a one-off register or deregister waits for Redis.
const ONE_OFF_TIMEOUT: Duration = Duration::from_secs(5);

/// `stagedoor register` (and the RegisterInstance RPC): sets the instance key with a TTL
/// and announces it. `--heartbeat` is [`super::heartbeat::run`].
pub async fn register(url: &str, service: &str, address: &str, port: u16, ttl: Duration) -> redis::RedisResult<()> {
    let instance = Instance { service: service.to_owned(), address: address.to_owned(), port };
    let mut conn = connect(url, ONE_OFF_TIMEOUT).await?;
    refresh(&mut conn, &instance, &instance.record(), ttl).await
}

pub async fn deregister(url: &str, service: &str, address: &str, port: u16) -> redis::RedisResult<()> {
    let mut conn = connect(url, ONE_OFF_TIMEOUT).await?;
    let mut pipe = redis::pipe();
    pipe.cmd("DEL").arg(super::instance_key(service, address, port)).ignore();
    pipe.cmd("PUBLISH").arg(CHANNEL).arg(service).ignore();
    pipe.query_async::<()>(&mut conn).await
}
