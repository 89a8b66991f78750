//! The root context: parses and compiles the config once, owns the per-VM state (token
//! cache, revocation list) and keeps the revocation list fresh in the background, so no
//! request ever waits on a callout.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use stagedoor_filter_core::cache::TokenCache;
use stagedoor_filter_core::config::FilterConfig;
use stagedoor_filter_core::revocation::RevocationUpdate;
use stagedoor_filter_core::{FilterState, Policy};

use crate::http::StagedoorHttp;
use crate::metrics::Metrics;
use crate::time::{now_ms, CoarseTime};

const CALLOUT_TIMEOUT: Duration = Duration::from_secs(2);
/// Metrics are handed to Envoy this often at the latest.
const METRICS_FLUSH: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct StagedoorRoot {
    policy: Option<Rc<Policy>>,
    state: Option<Rc<RefCell<FilterState>>>,
    metrics: Option<Rc<Metrics>>,
    time: Rc<CoarseTime>,
    revocation_call: Option<u32>,
    last_revocation_sync_ms: Option<u64>,
}

impl Context for StagedoorRoot {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        if self.revocation_call != Some(token_id) {
            return;
        }
        self.revocation_call = None;
        let status = self.get_http_call_response_header(":status");
        let update = self
            .get_http_call_response_body(0, body_size)
            .filter(|_| status.as_deref() == Some("200"))
            .and_then(|body| serde_json::from_slice::<RevocationUpdate>(&body).ok());
        let (Some(update), Some(state)) = (update, &self.state) else {
            // The last list stays in force; the staleness gauge shows for how long.
            if let Some(m) = &self.metrics {
                m.bump(m.revocation_sync_failures);
            }
            return;
        };
        let mut state = state.borrow_mut();
        state.revocations.apply(update);
        self.last_revocation_sync_ms = Some(now_ms(self));
        if let Some(m) = &self.metrics {
            m.set(m.revocation_entries, state.revocations.len() as u64);
            m.set(m.revocation_staleness_ms, 0);
        }
    }
}

impl StagedoorRoot {
    /// Asks the control plane for the revocations since the list's cursor (one callout at
    /// a time; a slow control plane is not piled onto). `early`: a try before the cluster
    /// may exist (Envoy still starting), whose failure is neither logged nor counted.
    fn poll_revocations(&mut self, early: bool) {
        let Some(rev) = self.policy.as_ref().and_then(|p| p.revocation.clone()) else { return };
        if self.revocation_call.is_some() {
            return;
        }
        let cursor = self.state.as_ref().map(|s| s.borrow().revocations.cursor()).unwrap_or(0);
        let path = format!("{}?since={cursor}", rev.path);
        let headers = vec![(":method", "GET"), (":path", path.as_str()), (":authority", rev.authority.as_str())];
        match self.dispatch_http_call(&rev.cluster, headers, None, vec![], CALLOUT_TIMEOUT) {
            Ok(token) => self.revocation_call = Some(token),
            Err(_) if early => {}
            Err(e) => {
                log::warn!("stagedoor: revocation poll not sent: {e:?}");
                if let Some(m) = &self.metrics {
                    m.bump(m.revocation_sync_failures);
                }
            }
        }
    }
}

impl RootContext for StagedoorRoot {
    /// Refusing a bad config (returning false) makes Envoy reject the listener update, so
    /// the control plane sees a NACK and the last good config keeps serving.
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            log::error!("stagedoor: no plugin configuration");
            return false;
        };
        let config = match FilterConfig::from_json(&bytes) {
            Ok(config) => config,
            Err(e) => {
                log::error!("stagedoor: config is not valid JSON for this filter: {e}");
                return false;
            }
        };
        let policy = match Policy::compile(&config) {
            Ok(policy) => policy,
            Err(e) => {
                log::error!("stagedoor: config refused: {e}");
                return false;
            }
        };
        log::info!("stagedoor: config {} loaded", policy.config_version);
        // A new config may carry new keys or roles: cached identities start over, the
        // revocation list carries on.
        let revocations = self
            .state
            .take()
            .and_then(|s| Rc::try_unwrap(s).ok())
            .map(|s| s.into_inner().revocations)
            .unwrap_or_default();
        self.state = Some(Rc::new(RefCell::new(FilterState {
            cache: TokenCache::new(policy.token_cache_entries),
            revocations,
        })));
        if self.metrics.is_none() {
            self.metrics = Some(Rc::new(Metrics::define()));
        }
        let poll = policy.revocation.as_ref().map(|rev| Duration::from_millis(rev.poll_interval_ms));
        let tick = poll.map_or(METRICS_FLUSH, |p| p.min(METRICS_FLUSH));
        self.set_tick_period(tick);
        self.time.set_tick(tick);
        self.time.set(now_ms(self));
        self.policy = Some(Rc::new(policy));
        // A new VM (Envoy starting, or reloading a failed one) knows no revocations yet:
        // ask at once rather than a tick from now. If the cluster is not there yet, the
        // tick retries.
        self.poll_revocations(true);
        true
    }

    fn on_tick(&mut self) {
        let now = now_ms(self);
        self.time.set(now);
        if let Some(m) = &self.metrics {
            m.flush();
        }
        if let (Some(m), Some(last)) = (&self.metrics, self.last_revocation_sync_ms) {
            m.set(m.revocation_staleness_ms, now.saturating_sub(last));
        }
        self.poll_revocations(false);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(StagedoorHttp::new(
            self.time.clone(),
            self.policy.clone()?,
            self.state.clone()?,
            self.metrics.clone()?,
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
