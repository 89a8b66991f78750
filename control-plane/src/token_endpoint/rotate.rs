//! The rotation of one refresh token: `rotate.lua`, run with EVALSHA, and its reply read
//! into a [`Rotation`]. Redis decides; this side only names the keys and reads the answer.

use std::time::Duration;

use stagedoor_redis::Connection;

use crate::discovery::revocation_sync::KEY_PREFIX as REVOKED_PREFIX;
use stagedoor_filter_core::revocation::family_key;

pub const SCRIPT: &str = include_str!("rotate.lua");

/// A family's record in Redis (see README, "Redis keys").
pub const FAMILY_PREFIX: &str = "stagedoor:refresh:";

/// What the script decided for a presented refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was the family's current one: `jti` succeeds it, rotated at `at_ms`.
    Rotated { jti: String, at_ms: i64 },
    /// The immediate predecessor within the grace: the same successor as before.
    Grace { jti: String, at_ms: i64 },
    /// Reuse: the family was revoked by this call.
    Reused,
    /// The family was revoked before.
    Revoked,
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the rotation script's reply is malformed: {0:?}")]
    Reply(Vec<String>),
}

/// One presented refresh token, as the script takes it.
#[derive(Debug, Clone)]
pub struct Presented<'a> {
    pub fid: &'a str,
    pub jti: &'a str,
    /// The family's absolute expiry (unix seconds); the family's keys live until then.
    pub family_exp: i64,
}

/// The Redis key of a family's revocation entry: the revocation list's own key, so the
/// revocation sync and every filter see it like any other.
pub fn revoked_key(fid: &str) -> String {
    format!("{REVOKED_PREFIX}{}", family_key(fid))
}

pub fn family_record_key(fid: &str) -> String {
    format!("{FAMILY_PREFIX}{fid}")
}

/// Runs the script with EVALSHA under `sha` (from [`load`]); the caller loads it again
/// when Redis answers NOSCRIPT (a restart, SCRIPT FLUSH).
pub async fn rotate(
    conn: &mut Connection,
    sha: &str,
    presented: &Presented<'_>,
    successor: &str,
    now_ms: i64,
    grace: Duration,
    timeout: Duration,
) -> Result<Rotation, RotateError> {
    let ttl = (presented.family_exp - now_ms.div_euclid(1000)).max(1);
    let mut call = redis::cmd("EVALSHA");
    call.arg(sha)
        .arg(2)
        .arg(family_record_key(presented.fid))
        .arg(revoked_key(presented.fid))
        .arg(presented.jti)
        .arg(successor)
        .arg(now_ms)
        .arg(grace.as_millis() as u64)
        .arg(presented.fid)
        .arg(presented.family_exp)
        .arg(ttl);
    let reply: Vec<String> = bounded(timeout, call.query_async(conn)).await?;
    parse(reply)
}

/// SCRIPT LOAD: the script's SHA for [`rotate`].
pub async fn load(conn: &mut Connection, timeout: Duration) -> Result<String, RotateError> {
    bounded(timeout, redis::cmd("SCRIPT").arg("LOAD").arg(SCRIPT).query_async::<String>(conn)).await
}

async fn bounded<T>(timeout: Duration, call: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, RotateError> {
    tokio::time::timeout(timeout, call).await.map_err(|_| RotateError::Timeout(timeout))?.map_err(RotateError::Redis)
}

impl RotateError {
    /// Redis answered but does not know the script (restarted, or SCRIPT FLUSH).
    pub fn is_no_script(&self) -> bool {
        matches!(self, Self::Redis(e) if e.kind() == redis::ErrorKind::NoScriptError)
    }

    /// The connection (or the primary behind it) is gone: a new one may succeed.
    pub fn is_lost_connection(&self) -> bool {
        match self {
            Self::Redis(e) => stagedoor_redis::is_lost_connection(e),
            Self::Timeout(_) => true,
            Self::Reply(_) => false,
        }
    }
}

/// The script's reply, `{outcome, jti, at_ms}`, as a [`Rotation`]; anything else is an error.
pub fn parse(reply: Vec<String>) -> Result<Rotation, RotateError> {
    let rotation = match reply.as_slice() {
        [outcome, jti, at] if !jti.is_empty() && (outcome == "rotated" || outcome == "grace") => {
            let Ok(at_ms) = at.parse::<i64>() else { return Err(RotateError::Reply(reply)) };
            let jti = jti.clone();
            if outcome == "rotated" {
                Rotation::Rotated { jti, at_ms }
            } else {
                Rotation::Grace { jti, at_ms }
            }
        }
        [outcome, _, _] if outcome == "reused" => Rotation::Reused,
        [outcome, _, _] if outcome == "revoked" => Rotation::Revoked,
        _ => return Err(RotateError::Reply(reply)),
    };
    Ok(rotation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn every_outcome_of_the_script_reads_and_nothing_else_does() {
        assert_eq!(parse(reply(&["rotated", "j2", "1000"])).unwrap(), Rotation::Rotated { jti: "j2".into(), at_ms: 1000 });
        assert_eq!(parse(reply(&["grace", "j2", "1000"])).unwrap(), Rotation::Grace { jti: "j2".into(), at_ms: 1000 });
        assert_eq!(parse(reply(&["reused", "", "0"])).unwrap(), Rotation::Reused);
        assert_eq!(parse(reply(&["reused", "j3", "0"])).unwrap(), Rotation::Reused);
        assert_eq!(parse(reply(&["revoked", "", "0"])).unwrap(), Rotation::Revoked);
        for bad in [&["rotated", "", "1"][..], &["rotated", "j", "x"], &["grace", "j"], &["other", "j", "1"], &[]] {
            assert!(matches!(parse(reply(bad)), Err(RotateError::Reply(_))), "{bad:?}");
        }
    }

    #[test]
    fn a_familys_revocation_is_an_ordinary_revocation_list_key() {
        assert_eq!(revoked_key("f1"), "stagedoor:revoked:family:f1");
        assert_eq!(family_record_key("f1"), "stagedoor:refresh:f1");
    }
}
