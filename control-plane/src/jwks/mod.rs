//! Keys from identity providers' JWKS URLs (registry keys with `jwks_uri`).
//!
//! The control plane fetches each JWKS (`fetch`), judges every key with the filter's own
//! compiler (`document`) and pushes the keys inside the filter config, so every Envoy gets
//! the same key set over xDS and no Envoy fetches on the request path. The fetch repeats on
//! the provider's Cache-Control within bounds (`freshness`), and at once when a filter
//! reports a kid it does not know, at most once per 30 s per issuer (`limiter`). A failed
//! or invalid fetch keeps the last good keys (`issuer`); `follow` is the task that does it.

pub mod document;
pub mod fetch;
pub mod follow;
pub mod freshness;
pub mod issuer;
pub mod limiter;

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::mpsc;

pub use crate::registry::remote_keys::{with_remote_keys, RemoteKeys};

/// An issuer's status with `last_fetch_age_ms`, `last_success_age_ms`, `last_error_age_ms`
/// and `next_refresh_in_ms` as of `now_unix_ms` (null where the time is).
pub fn with_ages(mut issuer: Value, now_unix_ms: u64) -> Value {
    for (at, age) in [
        ("last_fetch_unix_ms", "last_fetch_age_ms"),
        ("last_success_unix_ms", "last_success_age_ms"),
        ("last_error_unix_ms", "last_error_age_ms"),
    ] {
        issuer[age] = issuer[at].as_u64().map(|t| now_unix_ms.saturating_sub(t)).into();
    }
    issuer["next_refresh_in_ms"] = issuer["next_refresh_unix_ms"].as_u64().map(|t| t.saturating_sub(now_unix_ms)).into();
    issuer
}

/// An (issuer, kid) a filter reported: a hint to fetch, never a key.
pub type UnknownKid = (String, String);

/// How many reports may wait for the fetcher; more are dropped (the limiter would ignore
/// them: a flood of kids costs one fetch either way).
pub const REPORT_QUEUE: usize = 1024;

/// What the HTTP side shares with the fetcher task: the report queue and the status.
#[derive(Clone)]
pub struct JwksHandle {
    reports: mpsc::Sender<UnknownKid>,
    receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<UnknownKid>>>,
    status: Arc<Mutex<Vec<Value>>>,
}

impl Default for JwksHandle {
    fn default() -> Self {
        let (reports, receiver) = mpsc::channel(REPORT_QUEUE);
        Self { reports, receiver: Arc::new(tokio::sync::Mutex::new(receiver)), status: Arc::default() }
    }
}

impl JwksHandle {
    /// Queues a report without waiting; false if the queue is full.
    pub fn report(&self, issuer: String, kid: String) -> bool {
        self.reports.try_send((issuer, kid)).is_ok()
    }

    /// Each issuer as /status shows it, its ages as of now.
    pub fn status(&self) -> Vec<Value> {
        let now = crate::clock::unix_ms() as u64;
        self.status.lock().map(|s| s.iter().map(|issuer| with_ages(issuer.clone(), now)).collect()).unwrap_or_default()
    }

    fn set_status(&self, status: Vec<Value>) {
        if let Ok(mut s) = self.status.lock() {
            *s = status;
        }
    }
}

#[cfg(test)]
mod publish_tests;
