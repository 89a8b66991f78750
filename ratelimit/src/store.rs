//! The shared count: one EVALSHA of `gcra.lua` per request for all of its limits. The script
//! returns the state it decided on; the reply values come from the pure `decide` on that same
//! state, and a decision that differs from the script's is an error, not a guess.

use std::sync::Mutex;
use std::time::Duration;

use stagedoor_redis::{Connection, RedisUrl};
use thiserror::Error;

use crate::decide::{decide, Decision, KeyedLimit};

pub const SCRIPT: &str = include_str!("gcra.lua");

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{0}")]
    Url(#[from] stagedoor_redis::UrlError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the script's reply is malformed: {0}")]
    Reply(String),
    #[error("the script admitted={script} where the model says admitted={model}")]
    Disagrees { script: bool, model: bool },
}

/// A decision and the Redis clock it was taken at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub decision: Decision,
    pub now_us: u64,
    /// The script had to be loaded again first (Redis restarted or SCRIPT FLUSH).
    pub reloaded: bool,
}

pub struct RedisStore {
    /// Where Redis is; with Sentinel, each new connection goes to the primary named then.
    url: RedisUrl,
    /// Dropped on a connection error, opened again by the next request.
    conn: Mutex<Option<Connection>>,
    /// The script's SHA once Redis has computed it (SCRIPT LOAD).
    sha: Mutex<Option<String>>,
    timeout: Duration,
}

impl RedisStore {
    /// Connects and loads the script; fails when Redis cannot be reached now.
    pub async fn connect(url: &str, timeout: Duration) -> Result<RedisStore, StoreError> {
        let store = RedisStore::lazy(url, timeout)?;
        let mut conn = store.connection().await?;
        store.set_sha(load(&mut conn, timeout).await?);
        Ok(store)
    }

    /// Only checks the URL: the connection and the script wait for the first request, so a
    /// control plane starts (and fails over per route) while Redis is down.
    pub fn lazy(url: &str, timeout: Duration) -> Result<RedisStore, StoreError> {
        let url = RedisUrl::parse(url)?;
        Ok(RedisStore { url, conn: Mutex::new(None), sha: Mutex::new(None), timeout })
    }

    fn set_sha(&self, sha: String) {
        if let Ok(mut slot) = self.sha.lock() {
            *slot = Some(sha);
        }
    }

    fn sha(&self) -> Option<String> {
        self.sha.lock().ok().and_then(|slot| slot.clone())
    }

    /// A count whose connection turns out closed (the primary gone, or demoted in a
    /// Sentinel failover) is tried once more on a new connection, which finds the primary
    /// again; not after a timeout, which has spent the caller's time already. A count whose
    /// reply was lost may so be counted twice, which errs on the strict side.
    pub async fn count(&self, limits: &[KeyedLimit], cost: u32) -> Result<Counted, StoreError> {
        let mut result = self.count_once(limits, cost).await;
        if result.as_ref().is_err_and(|e| e.is_lost_connection() && !matches!(e, StoreError::Timeout(_))) {
            self.forget_connection();
            result = self.count_once(limits, cost).await;
        }
        if result.as_ref().is_err_and(StoreError::is_lost_connection) {
            self.forget_connection();
        }
        result
    }

    async fn count_once(&self, limits: &[KeyedLimit], cost: u32) -> Result<Counted, StoreError> {
        let mut conn = self.connection().await?;
        self.run(&mut conn, limits, cost).await
    }

    async fn run(&self, conn: &mut Connection, limits: &[KeyedLimit], cost: u32) -> Result<Counted, StoreError> {
        let (sha, loaded_now) = match self.sha() {
            Some(sha) => (sha, false),
            None => {
                let sha = load(conn, self.timeout).await?;
                self.set_sha(sha.clone());
                (sha, true)
            }
        };
        let mut call = redis::cmd("EVALSHA");
        call.arg(&sha).arg(limits.len()).arg(limits.iter().map(|l| l.key.as_str()).collect::<Vec<_>>()).arg(cost);
        for l in limits {
            call.arg(l.rate.emission_us).arg(l.rate.burst).arg(l.rate.period_us).arg(u8::from(l.shadow)).arg(u8::from(l.count_refused));
        }
        let (reply, reloaded) = match bounded(self.timeout, call.query_async::<Vec<String>>(conn)).await {
            Err(StoreError::Redis(e)) if e.kind() == redis::ErrorKind::NoScriptError => {
                load(conn, self.timeout).await?;
                (bounded(self.timeout, call.query_async::<Vec<String>>(conn)).await?, true)
            }
            other => (other?, loaded_now),
        };
        let (script_admitted, now_us, before) = parse_reply(&reply, limits.len())?;
        let checks: Vec<_> = limits.iter().zip(before).map(|(l, tat)| l.with_state(tat)).collect();
        let decision = decide(&checks, now_us, cost);
        if decision.admitted != script_admitted {
            return Err(StoreError::Disagrees { script: script_admitted, model: decision.admitted });
        }
        Ok(Counted { decision, now_us, reloaded })
    }

    async fn connection(&self) -> Result<Connection, StoreError> {
        if let Some(conn) = self.conn.lock().map_err(|_| StoreError::Reply("connection lock poisoned".into()))?.clone() {
            return Ok(conn);
        }
        let conn = bounded(self.timeout, self.url.connect(self.timeout)).await?;
        if let Ok(mut slot) = self.conn.lock() {
            *slot = Some(conn.clone());
        }
        Ok(conn)
    }

    fn forget_connection(&self) {
        if let Ok(mut slot) = self.conn.lock() {
            *slot = None;
        }
    }
}

impl StoreError {
    fn is_lost_connection(&self) -> bool {
        match self {
            StoreError::Redis(e) => stagedoor_redis::is_lost_connection(e),
            StoreError::Timeout(_) => true,
            _ => false,
        }
    }
}

async fn load(conn: &mut Connection, timeout: Duration) -> Result<String, StoreError> {
    bounded(timeout, redis::cmd("SCRIPT").arg("LOAD").arg(SCRIPT).query_async::<String>(conn)).await
}

async fn bounded<T>(timeout: Duration, call: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(StoreError::Timeout(timeout)),
    }
}

/// `{admitted, now_us, tat before per key}` as the script sends it.
pub fn parse_reply(reply: &[String], keys: usize) -> Result<(bool, u64, Vec<Option<u64>>), StoreError> {
    let bad = || StoreError::Reply(format!("{reply:?} for {keys} keys"));
    let [admitted, now, before @ ..] = reply else { return Err(bad()) };
    if before.len() != keys {
        return Err(bad());
    }
    let admitted = match admitted.as_str() {
        "1" => true,
        "0" => false,
        _ => return Err(bad()),
    };
    let now_us = now.parse().map_err(|_| bad())?;
    let before = before
        .iter()
        .map(|tat| if tat.is_empty() { Ok(None) } else { tat.parse().map(Some).map_err(|_| bad()) })
        .collect::<Result<_, _>>()?;
    Ok((admitted, now_us, before))
}
