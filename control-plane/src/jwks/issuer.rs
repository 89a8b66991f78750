//! One issuer's JWKS as the fetcher follows it: the last good key set, when to fetch
//! again, the refetch limiter, and what /status shows. Pure: the fetcher task does the I/O
//! and hands each result here with the time.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::registry::jwks_source::JwksSource;

use super::document::{compile_document, CompiledKeySet};
use super::fetch::{FetchError, Fetched};
use super::freshness::{next_refresh, retry_after};
use super::limiter::{OnReport, RefetchLimiter};

/// Why a fetch runs: the timer, or reports of unknown kids (limited, see `limiter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchKind {
    Refresh,
    Refetch,
}

/// What a finished fetch means for the keys Envoys get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The same keys (or an error, the last good keys kept): nothing to publish.
    Unchanged,
    /// A new key set to publish; [`IssuerState::accept`] once published.
    Changed { set: CompiledKeySet, etag: Option<String> },
}

#[derive(Debug, Clone)]
pub struct IssuerState {
    pub source: JwksSource,
    /// The last good key set, as published; None before the first good fetch.
    pub keys: Option<CompiledKeySet>,
    etag: Option<String>,
    next_refresh: Instant,
    failures: u32,
    limiter: RefetchLimiter,
    in_flight: Option<FetchKind>,
    last_fetch_unix_ms: Option<u64>,
    last_success_unix_ms: Option<u64>,
    last_error: Option<(String, u64)>,
    fetches: u64,
    refetches: u64,
}

impl IssuerState {
    /// A new source is fetched at once.
    pub fn new(source: JwksSource, now: Instant) -> Self {
        Self {
            source,
            keys: None,
            etag: None,
            next_refresh: now,
            failures: 0,
            limiter: RefetchLimiter::default(),
            in_flight: None,
            last_fetch_unix_ms: None,
            last_success_unix_ms: None,
            last_error: None,
            fetches: 0,
            refetches: 0,
        }
    }

    /// A token named `kid`, which the filter has no key for.
    pub fn report(&mut self, kid: &str, now: Instant) -> OnReport {
        let known = self.keys.as_ref().is_some_and(|set| set.keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
        self.limiter.report(kid, known, now)
    }

    /// The fetch to start now, if one is due and none is in flight.
    pub fn due(&self, now: Instant) -> Option<FetchKind> {
        if self.in_flight.is_some() {
            return None;
        }
        if self.limiter.due(now).is_some_and(|at| at <= now) {
            return Some(FetchKind::Refetch);
        }
        (self.next_refresh <= now).then_some(FetchKind::Refresh)
    }

    /// When [`Self::due`] may next say yes (None while a fetch is in flight).
    pub fn wake_at(&self, now: Instant) -> Option<Instant> {
        if self.in_flight.is_some() {
            return None;
        }
        Some(self.limiter.due(now).map_or(self.next_refresh, |at| at.min(self.next_refresh)))
    }

    /// The If-None-Match to send: only with keys in hand, which a 304 then confirms.
    pub fn etag(&self) -> Option<&str> {
        self.keys.as_ref().and(self.etag.as_deref())
    }

    pub fn start(&mut self, kind: FetchKind, now: Instant) {
        self.in_flight = Some(kind);
        self.fetches += 1;
        if kind == FetchKind::Refetch {
            self.refetches += 1;
            self.limiter.start(now);
        }
    }

    /// A fetch ended with `result` at `now` (`unix_ms` for /status).
    pub fn finish(&mut self, result: Result<Fetched, FetchError>, now: Instant, unix_ms: u64) -> FetchOutcome {
        let kind = self.in_flight.take();
        self.last_fetch_unix_ms = Some(unix_ms);
        let compiled = match result {
            Ok(Fetched::NotModified { cache_control }) => Ok((None, cache_control)),
            Ok(Fetched::Document { body, etag, cache_control }) => {
                compile_document(&body, &self.source).map(|set| (Some((set, etag)), cache_control)).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match compiled {
            Ok((fresh, cache_control)) => {
                self.failures = 0;
                self.last_success_unix_ms = Some(unix_ms);
                self.next_refresh = now + next_refresh(cache_control.as_deref(), self.source.refresh);
                let kids = match &fresh {
                    Some((set, _)) => set.kids(),
                    None => self.keys.as_ref().map(CompiledKeySet::kids).unwrap_or_default(),
                };
                if kind == Some(FetchKind::Refetch) {
                    self.limiter.found(&kids, now, self.source.refresh);
                }
                match fresh {
                    Some((set, etag)) if self.keys.as_ref() != Some(&set) => FetchOutcome::Changed { set, etag },
                    Some((_, etag)) => {
                        self.etag = etag;
                        FetchOutcome::Unchanged
                    }
                    None => FetchOutcome::Unchanged,
                }
            }
            Err(error) => {
                self.failures += 1;
                self.next_refresh = now + retry_after(self.failures, self.source.refresh);
                if kind == Some(FetchKind::Refetch) {
                    self.limiter.failed();
                }
                self.record_error(error, unix_ms);
                FetchOutcome::Unchanged
            }
        }
    }

    /// The changed key set is what Envoys now get. The last error stays on show, with its
    /// age, beside the newer success.
    pub fn accept(&mut self, set: CompiledKeySet, etag: Option<String>) {
        self.keys = Some(set);
        self.etag = etag;
    }

    /// A key set that could not be published (it conflicts with the registry's keys): the
    /// last good one stays, and the next fetch brings the whole document again.
    pub fn refuse(&mut self, error: String, now: Instant, unix_ms: u64) {
        self.failures += 1;
        self.next_refresh = now + retry_after(self.failures, self.source.refresh).max(Duration::from_secs(5));
        self.record_error(error, unix_ms);
    }

    fn record_error(&mut self, error: String, unix_ms: u64) {
        tracing::warn!(issuer = %self.source.issuer, jwks_uri = %self.source.uri, %error, "JWKS fetch failed; keeping the last good keys");
        self.last_error = Some((error, unix_ms));
    }

    /// The issuer as /status shows it, with times as unix ms (`super::with_ages` adds the
    /// ages when /status is read: this is written when something happens, read any time).
    pub fn status(&self, now: Instant, now_unix_ms: u64) -> Value {
        let error_at = self.last_error.as_ref().map(|(_, at)| *at);
        let next_refresh_unix_ms = now_unix_ms.saturating_add(self.next_refresh.saturating_duration_since(now).as_millis() as u64);
        json!({
            "issuer": self.source.issuer,
            "jwks_uri": self.source.uri,
            "keys_loaded": self.keys.is_some(),
            "kids": self.keys.as_ref().map(|s| s.kids().into_iter().collect::<Vec<_>>()).unwrap_or_default(),
            "skipped": self.keys.as_ref().map(|s| s.skipped.clone()).unwrap_or_default(),
            "last_fetch_unix_ms": self.last_fetch_unix_ms,
            "last_success_unix_ms": self.last_success_unix_ms,
            "last_error": self.last_error.as_ref().map(|(e, _)| e.clone()),
            "last_error_unix_ms": error_at,
            "next_refresh_unix_ms": (self.in_flight.is_none()).then_some(next_refresh_unix_ms),
            "fetches": self.fetches,
            "refetches": self.refetches,
            "kids_known_absent": self.limiter.absent_count(),
        })
    }
}

#[cfg(test)]
#[path = "issuer_tests.rs"]
mod tests;
