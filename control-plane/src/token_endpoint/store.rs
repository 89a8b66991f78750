//! The token endpoint's Redis: one multiplexed connection to the current primary, opened
//! on first use and again after an error, so the endpoint starts (and answers 503) while
//! Redis is down, and follows a Sentinel failover: a rotation that finds its connection
//! lost (the old primary gone or demoted) is tried once more on a new one.

use std::time::Duration;

use stagedoor_redis::Connection;
use tokio::sync::Mutex;

use super::rotate::{load, rotate, Presented, RotateError, Rotation};

/// How long a connect or the script may take before the endpoint answers 503.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

pub struct TokenStore {
    pub url: String,
    conn: Mutex<Option<Connection>>,
    /// The rotation script's SHA once Redis has loaded it.
    sha: Mutex<Option<String>>,
}

impl TokenStore {
    pub fn new(url: String) -> Self {
        Self { url, conn: Mutex::new(None), sha: Mutex::new(None) }
    }

    /// The open connection, or a new one.
    pub async fn connection(&self) -> redis::RedisResult<Connection> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = crate::discovery::redis_source::connect(&self.url, REDIS_TIMEOUT).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// One rotation (see [`super::rotate`]): the script loaded on first use and again after
    /// NOSCRIPT; the connection dropped after any other error, so the next call reconnects.
    /// Retrying is safe: a rotation whose reply was lost is found again as the grace case.
    pub async fn rotate(&self, presented: &Presented<'_>, successor: &str, now_ms: i64, grace: Duration) -> Result<Rotation, RotateError> {
        let mut result = self.try_rotate(presented, successor, now_ms, grace).await;
        if result.as_ref().is_err_and(RotateError::is_lost_connection) {
            self.forget().await;
            result = self.try_rotate(presented, successor, now_ms, grace).await;
        }
        if result.is_err() {
            self.forget().await;
        }
        result
    }

    async fn try_rotate(&self, presented: &Presented<'_>, successor: &str, now_ms: i64, grace: Duration) -> Result<Rotation, RotateError> {
        let mut conn = self.connection().await?;
        let known = self.sha.lock().await.clone();
        let sha = match known {
            Some(sha) => sha,
            None => self.load(&mut conn).await?,
        };
        match rotate(&mut conn, &sha, presented, successor, now_ms, grace, REDIS_TIMEOUT).await {
            Err(e) if e.is_no_script() => {
                let sha = self.load(&mut conn).await?;
                rotate(&mut conn, &sha, presented, successor, now_ms, grace, REDIS_TIMEOUT).await
            }
            other => other,
        }
    }

    async fn load(&self, conn: &mut Connection) -> Result<String, RotateError> {
        let sha = load(conn, REDIS_TIMEOUT).await?;
        *self.sha.lock().await = Some(sha.clone());
        Ok(sha)
    }

    /// After an error: the next request connects again (Redis may have restarted).
    pub async fn forget(&self) {
        *self.conn.lock().await = None;
    }
}
