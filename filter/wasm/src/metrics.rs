//! The filter's counters and gauges, visible at Envoy's /stats/prometheus as
//! `stagedoor_*` (and at /stats as `wasmcustom.stagedoor_*`).

use proxy_wasm::hostcalls::{define_metric, increment_metric, record_metric};
use proxy_wasm::types::MetricType;
use stagedoor_filter_core::token::TokenError;
use stagedoor_filter_core::Observed;

pub struct Metrics {
    authn_ok: u32,
    authn_failed: Vec<u32>,
    rbac_denied: u32,
    revoked_hits: u32,
    cache_hits: u32,
    cache_misses: u32,
    pub revocation_staleness_ms: u32,
    pub revocation_entries: u32,
    pub revocation_sync_failures: u32,
}

fn define(kind: MetricType, name: &str) -> u32 {
    // A metric that cannot be defined is not worth failing requests over: id 0 makes the
    // increments no-ops that the host rejects.
    define_metric(kind, name).unwrap_or_else(|e| {
        log::warn!("stagedoor: metric {name} not defined: {e:?}");
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
            authn_ok: counter("stagedoor_authn_ok"),
            authn_failed: TokenError::ALL_CODES
                .iter()
                .map(|code| counter(&format!("stagedoor_authn_failed_{}", code.to_ascii_lowercase())))
                .collect(),
            rbac_denied: counter("stagedoor_rbac_denied"),
            revoked_hits: counter("stagedoor_revoked_hits"),
            cache_hits: counter("stagedoor_token_cache_hits"),
            cache_misses: counter("stagedoor_token_cache_misses"),
            revocation_staleness_ms: gauge("stagedoor_revocation_staleness_ms"),
            revocation_entries: gauge("stagedoor_revocation_entries"),
            revocation_sync_failures: counter("stagedoor_revocation_sync_failures"),
        }
    }

    pub fn observe(&self, observed: &Observed) {
        let bump = |id: u32| {
            let _ = increment_metric(id, 1);
        };
        if observed.authenticated {
            bump(self.authn_ok);
        }
        if let Some(e) = observed.token_error {
            if let Some(id) = self.authn_failed.get(e.index()) {
                bump(*id);
            }
            if e == TokenError::Revoked {
                bump(self.revoked_hits);
            }
        }
        match observed.cache_hit {
            Some(true) => bump(self.cache_hits),
            Some(false) => bump(self.cache_misses),
            None => {}
        }
        if observed.rbac_denied {
            bump(self.rbac_denied);
        }
    }

    pub fn set(&self, id: u32, value: u64) {
        let _ = record_metric(id, value);
    }

    pub fn bump(&self, id: u32) {
        let _ = increment_metric(id, 1);
    }
}
