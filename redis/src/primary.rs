//! The current primary, found anew on every (re)connect: for one Redis its URL, for
//! Sentinel the address the Sentinels name, confirmed with `ROLE`. So after a failover the
//! next connection (every caller reconnects after an error) goes to the new primary, and
//! so do the subscriptions, without a restart. Sentinel also disconnects every client of
//! an old primary it demotes, so no caller stays on it.
//!
//! Not the redis crate's `sentinel` feature: it asks the Sentinels one after another with
//! no timeout, so one hung Sentinel (a stopped process, a partition) hangs every connect.
//! Here each Sentinel has `timeout`, and the next one is asked after it.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection, PubSub};
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, RedisError, RedisFuture, RedisResult, Value};

use crate::url::{RedisUrl, Sentinels, Target, WAIT_TIMEOUT};

/// The primary as found now: open connections and subscriptions to it.
pub struct Primary {
    client: Client,
    timeout: Duration,
    wait_replicas: u32,
}

impl RedisUrl {
    /// Finds the current primary; every step (each Sentinel asked, the ROLE check) gives up
    /// after `timeout`.
    pub async fn primary(&self, timeout: Duration) -> RedisResult<Primary> {
        let client = match &self.target {
            Target::Direct(info) => Client::open(info.clone())?,
            Target::Sentinel(sentinels) => ask_sentinels(sentinels, timeout).await?,
        };
        Ok(Primary { client, timeout, wait_replicas: self.wait_replicas })
    }

    /// The address the Sentinels name as the primary now (`host:port`), without checking it:
    /// cheap (one Sentinel asked, the primary not contacted), for a caller waiting out a
    /// failover to tell when a new primary is named. None for a direct URL (there is no
    /// other primary to wait for) or when no Sentinel answers.
    pub async fn named_primary(&self, timeout: Duration) -> Option<String> {
        let Target::Sentinel(sentinels) = &self.target else { return None };
        for sentinel in &sentinels.hosts {
            if let Ok(Some((host, port))) = bounded(timeout, named_by(sentinel, &sentinels.master, timeout)).await {
                return Some(format!("{host}:{port}"));
            }
        }
        None
    }

    /// A connection to the current primary whose commands give up after `timeout`.
    pub async fn connect(&self, timeout: Duration) -> RedisResult<Connection> {
        self.primary(timeout).await?.connect().await
    }
}

impl Primary {
    pub async fn connect(&self) -> RedisResult<Connection> {
        let config = AsyncConnectionConfig::new().set_connection_timeout(self.timeout).set_response_timeout(self.timeout);
        let inner = self.client.get_multiplexed_async_connection_with_config(&config).await?;
        Ok(Connection { inner, wait_replicas: self.wait_replicas })
    }

    /// A subscriber connection (the caller bounds its commands: PubSub has no timeout).
    pub async fn pubsub(&self) -> RedisResult<PubSub> {
        bounded(self.timeout, self.client.get_async_pubsub()).await
    }
}

/// A connection to the primary that knows how many replicas an acknowledged write needs.
#[derive(Clone)]
pub struct Connection {
    inner: MultiplexedConnection,
    wait_replicas: u32,
}

/// What `WAIT` said after a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replicated {
    pub acked: u32,
    pub wanted: u32,
}

impl Replicated {
    pub fn is_enough(&self) -> bool {
        self.acked >= self.wanted
    }
}

impl std::fmt::Display for Replicated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of the {} replicas wanted (wait_replicas) acknowledged it within {} ms", self.acked, self.wanted, WAIT_TIMEOUT.as_millis())
    }
}

impl Connection {
    /// After a write someone relies on: waits until `wait_replicas` replicas hold every
    /// write made on this connection so far (none wanted: answers at once, no round trip).
    /// A primary lost before they do may lose the write; the caller says so.
    pub async fn replicated(&mut self) -> RedisResult<Replicated> {
        if self.wait_replicas == 0 {
            return Ok(Replicated { acked: 0, wanted: 0 });
        }
        let acked: u32 = redis::cmd("WAIT").arg(self.wait_replicas).arg(WAIT_TIMEOUT.as_millis() as u64).query_async(&mut self.inner).await?;
        Ok(Replicated { acked, wanted: self.wait_replicas })
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, Value> {
        self.inner.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(&'a mut self, cmd: &'a redis::Pipeline, offset: usize, count: usize) -> RedisFuture<'a, Vec<Value>> {
        self.inner.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

/// Whether an error means the connection (or the primary behind it) is gone: the caller
/// drops it, and the next connect finds the primary again. READONLY is a primary demoted
/// under a connection Sentinel has not closed yet.
pub fn is_lost_connection(error: &RedisError) -> bool {
    error.is_connection_dropped() || error.is_io_error() || error.is_connection_refusal() || error.is_timeout() || error.kind() == redis::ErrorKind::ReadOnly
}

/// Asks each Sentinel in turn for the master's address and returns the first one that
/// answers ROLE as a master. During a failover the Sentinels still name the old primary
/// (down) or the promoted replica before it has switched: an error, retried by the caller.
async fn ask_sentinels(sentinels: &Sentinels, timeout: Duration) -> RedisResult<Client> {
    let mut failures = Vec::new();
    for sentinel in &sentinels.hosts {
        match bounded(timeout, ask_one(sentinel, sentinels, timeout)).await {
            Ok(client) => return Ok(client),
            Err(e) => failures.push(format!("{}: {e}", address(sentinel))),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        format!("no sentinel named a reachable primary for {:?}: {}", sentinels.master, failures.join("; ")),
    )
    .into())
}

/// What one Sentinel names as the master's address.
async fn named_by(sentinel: &ConnectionInfo, master: &str, timeout: Duration) -> RedisResult<Option<(String, u16)>> {
    let config = AsyncConnectionConfig::new().set_connection_timeout(timeout).set_response_timeout(timeout);
    let mut conn = Client::open(sentinel.clone())?.get_multiplexed_async_connection_with_config(&config).await?;
    redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(master).query_async(&mut conn).await
}

async fn ask_one(sentinel: &ConnectionInfo, sentinels: &Sentinels, timeout: Duration) -> RedisResult<Client> {
    let config = AsyncConnectionConfig::new().set_connection_timeout(timeout).set_response_timeout(timeout);
    let Some((host, port)) = named_by(sentinel, &sentinels.master, timeout).await? else {
        return Err(not_connected(format!("knows no master named {:?}", sentinels.master)));
    };
    let info = ConnectionInfo { addr: ConnectionAddr::Tcp(host.clone(), port), redis: sentinels.primary.clone() };
    let client = Client::open(info)?;
    let mut primary = client.get_multiplexed_async_connection_with_config(&config).await?;
    let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut primary).await?;
    match role.first().map(redis::from_redis_value::<String>) {
        Some(Ok(role)) if role == "master" => Ok(client),
        Some(Ok(role)) => Err(not_connected(format!("names {host}:{port}, which is a {role} now (a failover in progress)"))),
        _ => Err(not_connected(format!("names {host}:{port}, whose ROLE reply is unreadable"))),
    }
}

fn address(info: &ConnectionInfo) -> String {
    match &info.addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port}"),
        ConnectionAddr::Unix(path) => path.display().to_string(),
    }
}

fn not_connected(detail: String) -> RedisError {
    std::io::Error::new(std::io::ErrorKind::NotConnected, detail).into()
}

async fn bounded<T>(timeout: Duration, call: impl std::future::Future<Output = RedisResult<T>>) -> RedisResult<T> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("redis did not answer within {timeout:?}")).into()),
    }
}
