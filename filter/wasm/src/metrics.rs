//! The filter's counters and gauges, visible at Envoy's /stats/prometheus as
//! `stagedoor_*` (and at /stats as `wasmcustom.stagedoor_*`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use proxy_wasm::types::{LogLevel, MetricType};
use stagedoor_filter_core::response_cache::CacheEvent;
use stagedoor_filter_core::shadow::ShadowDifference;
use stagedoor_filter_core::signature::SignatureError;
use stagedoor_filter_core::token::TokenError;
use stagedoor_filter_core::Observed;

use crate::host::{define_metric, increment_metric, record_metric};

/// A counter counted in VM memory and handed to Envoy on the root context's tick: a host
/// call per request per counter would cost more than the counting.
struct Counter {
    id: u32,
    pending: Cell<u64>,
}

impl Counter {
    fn new(name: &str) -> Self {
        Self { id: counter(name), pending: Cell::new(0) }
    }

    fn add(&self) {
        self.pending.set(self.pending.get() + 1);
    }

    fn flush(&self) {
        let n = self.pending.replace(0);
        if n > 0 {
            let _ = increment_metric(self.id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

pub struct Metrics {
    authn_ok: Counter,
    authn_failed: Vec<Counter>,
    rbac_denied: Counter,
    revoked_hits: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
    host_refusals: Counter,
    held: Counter,
    validation_refused: Counter,
    signature_verified: Counter,
    signature_refused: Vec<Counter>,
    /// One counter per shadow difference's metric name, defined on first use (the names
    /// come from the config's rules and roles, so they are bounded by it).
    shadow: RefCell<BTreeMap<String, Counter>>,
    /// Shadow differences since the last report to the control plane, by (label, denied).
    shadow_unreported: RefCell<BTreeMap<(String, bool), u64>>,
    /// The response cache's counters, per cached route (defined on a route's first event,
    /// so bounded by the config's routes) and kind, in [`CacheEvent::ALL`] order.
    response_cache: RefCell<BTreeMap<String, Vec<Counter>>>,
    /// The response cache's entries and bytes in this VM, as last added to the gauges
    /// (which sum every VM's: each adds its change since its last tick).
    cache_usage: ResponseCacheUsage,
    pub revocation_staleness_ms: u32,
    pub revocation_entries: u32,
    pub revocation_sync_failures: u32,
    /// Unknown kids of JWKS issuers posted to the control plane, and those dropped (over a
    /// batch's bound, or oversize): counters, summed over every VM.
    pub unknown_kids_reported: u32,
    pub unknown_kids_dropped: u32,
}

fn define(kind: MetricType, name: &str) -> u32 {
    // A metric that cannot be defined is not worth failing requests over: id 0 makes the
    // increments no-ops that the host rejects.
    define_metric(kind, name).unwrap_or_else(|e| {
        crate::host::log(LogLevel::Warn, &format!("stagedoor: metric {name} not defined: {e}"));
        0
    })
}

fn counter(name: &str) -> u32 {
    define(MetricType::Counter, name)
}

fn gauge(name: &str) -> u32 {
    define(MetricType::Gauge, name)
}

impl Metrics {
    pub fn define() -> Self {
        Self {
            authn_ok: Counter::new("stagedoor_authn_ok"),
            authn_failed: TokenError::ALL_CODES
                .iter()
                .map(|code| Counter::new(&format!("stagedoor_authn_failed_{}", code.to_ascii_lowercase())))
                .collect(),
            rbac_denied: Counter::new("stagedoor_rbac_denied"),
            revoked_hits: Counter::new("stagedoor_revoked_hits"),
            cache_hits: Counter::new("stagedoor_token_cache_hits"),
            cache_misses: Counter::new("stagedoor_token_cache_misses"),
            host_refusals: Counter::new("stagedoor_internal_refusals"),
            held: Counter::new("stagedoor_held_for_revocations"),
            validation_refused: Counter::new("stagedoor_validation_refused"),
            signature_verified: Counter::new("stagedoor_signature_verified"),
            signature_refused: SignatureError::ALL
                .iter()
                .map(|e| Counter::new(&format!("stagedoor_signature_refused_{}", e.code().to_ascii_lowercase())))
                .collect(),
            shadow: RefCell::default(),
            shadow_unreported: RefCell::default(),
            response_cache: RefCell::default(),
            cache_usage: ResponseCacheUsage {
                entries_gauge: gauge("stagedoor_response_cache_entries"),
                bytes_gauge: gauge("stagedoor_response_cache_bytes"),
                entries: Cell::new(0),
                bytes: Cell::new(0),
            },
            revocation_staleness_ms: gauge("stagedoor_revocation_staleness_ms"),
            revocation_entries: gauge("stagedoor_revocation_entries"),
            revocation_sync_failures: counter("stagedoor_revocation_sync_failures"),
            unknown_kids_reported: counter("stagedoor_unknown_kids_reported"),
            unknown_kids_dropped: counter("stagedoor_unknown_kids_dropped"),
        }
    }

    /// Counts a request refused before any decision (unreadable headers, no policy).
    pub fn refused(&self) {
        self.host_refusals.add();
    }

    /// Counts one request (in VM memory; see [`Metrics::flush`]).
    #[inline(never)] // kept out of the request-headers callback (stagedoor_filter_core::policy `OUT_OF_LINE`)
    pub fn observe(&self, observed: &Observed) {
        if observed.authenticated {
            self.authn_ok.add();
        }
        if let Some(e) = observed.token_error {
            if let Some(counter) = self.authn_failed.get(e.index()) {
                counter.add();
            }
            if e == TokenError::Revoked {
                self.revoked_hits.add();
            }
        }
        match observed.cache_hit {
            Some(true) => self.cache_hits.add(),
            Some(false) => self.cache_misses.add(),
            None => {}
        }
        if observed.rbac_denied {
            self.rbac_denied.add();
        }
        if let Some(difference) = &observed.shadow {
            self.shadow_difference(difference);
        }
    }

    fn shadow_difference(&self, difference: &ShadowDifference) {
        let name = difference.metric_name();
        self.shadow.borrow_mut().entry(name).or_insert_with_key(|name| Counter::new(name)).add();
        *self.shadow_unreported.borrow_mut().entry((difference.label.to_string(), difference.denied)).or_default() += 1;
    }

    /// Whether any shadow difference waits to be reported (the tick asks first).
    pub fn has_unreported_shadow(&self) -> bool {
        !self.shadow_unreported.borrow().is_empty()
    }

    /// The shadow differences not yet reported, emptied (handed back with
    /// [`Metrics::unreported_again`] if the report fails).
    pub fn take_unreported_shadow(&self) -> BTreeMap<(String, bool), u64> {
        std::mem::take(&mut *self.shadow_unreported.borrow_mut())
    }

    pub fn unreported_again(&self, counts: BTreeMap<(String, bool), u64>) {
        let mut unreported = self.shadow_unreported.borrow_mut();
        for (key, n) in counts {
            *unreported.entry(key).or_default() += n;
        }
    }

    pub fn signature_verified(&self) {
        self.signature_verified.add();
    }

    pub fn signature_refused(&self, error: SignatureError) {
        if let Some(counter) = self.signature_refused.get(error.index()) {
            counter.add();
        }
    }

    /// Counts a request refused by its route's validation (400, 413 or 422).
    pub fn validation_refused(&self) {
        self.validation_refused.add();
    }

    /// Counts `event` on the cached route `route` (in VM memory, like every counter).
    pub fn cache_event(&self, route: &str, event: CacheEvent) {
        self.cache_events(route, event, 1);
    }

    pub fn cache_events(&self, route: &str, event: CacheEvent, n: u64) {
        let mut routes = self.response_cache.borrow_mut();
        if !routes.contains_key(route) {
            let counters = CacheEvent::ALL.iter().map(|e| Counter::new(&e.metric_name(route))).collect();
            routes.insert(route.to_owned(), counters);
        }
        if let Some(counter) = routes.get(route).and_then(|c| c.get(event.index())) {
            counter.pending.set(counter.pending.get() + n);
        }
    }

    /// This VM's response cache holds `entries` answers of `bytes` in all (on the tick).
    pub fn cache_usage(&self, entries: usize, bytes: usize) {
        self.cache_usage.record(entries as i64, bytes as i64);
    }

    /// Counts a request held until the revocation list is known.
    pub fn held(&self) {
        self.held.add();
    }

    /// Hands the counts to Envoy; called from the root context's tick.
    pub fn flush(&self) {
        let counters = [
            &self.authn_ok,
            &self.rbac_denied,
            &self.revoked_hits,
            &self.cache_hits,
            &self.cache_misses,
            &self.host_refusals,
            &self.held,
            &self.validation_refused,
            &self.signature_verified,
        ];
        for counter in counters.into_iter().chain(&self.authn_failed).chain(&self.signature_refused) {
            counter.flush();
        }
        for counter in self.shadow.borrow().values() {
            counter.flush();
        }
        for counter in self.response_cache.borrow().values().flatten() {
            counter.flush();
        }
    }

    pub fn set(&self, id: u32, value: u64) {
        let _ = record_metric(id, value);
    }

    pub fn bump(&self, id: u32) {
        self.add(id, 1);
    }

    pub fn add(&self, id: u32, by: u64) {
        let _ = increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
    }
}

struct ResponseCacheUsage {
    entries_gauge: u32,
    bytes_gauge: u32,
    entries: Cell<i64>,
    bytes: Cell<i64>,
}

impl ResponseCacheUsage {
    /// Adds the change since the last record to the shared gauges (a gauge takes a
    /// negative increment as a decrease).
    fn record(&self, entries: i64, bytes: i64) {
        for (gauge, last, now) in [(self.entries_gauge, &self.entries, entries), (self.bytes_gauge, &self.bytes, bytes)] {
            let change = now - last.replace(now);
            if change != 0 {
                let _ = increment_metric(gauge, change);
            }
        }
    }
}

impl Drop for ResponseCacheUsage {
    /// A root context that goes (a new filter config) takes its VM's share with it.
    fn drop(&mut self) {
        self.record(0, 0);
    }
}
