//! The root context: parses and compiles the config once, owns the per-VM state (token
//! cache, revocation list, requests held for it) and keeps the revocation list fresh in
//! the background, so no request ever waits on a callout once the list is known.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use stagedoor_filter_core::apply::refuse_or_stop;
use stagedoor_filter_core::cache::TokenCache;
use stagedoor_filter_core::config::FilterConfig;
use stagedoor_filter_core::feed_poll::{callout_timeout, feed_path, poll_again_now, tick_period};
use stagedoor_filter_core::hold::{HeldRequests, Release};
use stagedoor_filter_core::key_reports::{report_body, KeyReports};
use stagedoor_filter_core::revocation::{RevocationList, RevocationUpdate};
use stagedoor_filter_core::shadow::{ShadowReport, SHADOW_REPORT_PATH};
use stagedoor_filter_core::{FilterState, Policy};

use crate::fanout::deliver;
use crate::host::{self, CurrentRequest};
use crate::http::{AnsweredHere, StagedoorHttp, Unconfigured};
use crate::metrics::Metrics;
use crate::time::{now_ms, CoarseTime};

/// An unknown-kid report is small and answered at once; past this it is given up.
const KEY_REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// Metrics are handed to Envoy this often at the latest.
const METRICS_FLUSH: Duration = Duration::from_millis(500);

pub struct StagedoorRoot {
    context_id: u32,
    policy: Option<Rc<Policy>>,
    state: Option<Rc<RefCell<FilterState>>>,
    held: Rc<RefCell<HeldRequests>>,
    /// Composite routes' calls and the response cache, shared with every request context
    /// (a new config starts the cache empty: its routes may differ).
    answered_here: AnsweredHere,
    metrics: Option<Rc<Metrics>>,
    time: Rc<CoarseTime>,
    revocation_call: Option<u32>,
    last_revocation_sync_ms: Option<u64>,
    /// The shadow report in flight and the counts it carries (handed back if it fails).
    shadow_report_call: Option<(u32, ShadowCounts)>,
    /// The unknown-kid report in flight (its answer is not waited for, only awaited before
    /// the next one, so a slow control plane is not piled onto).
    key_report_call: Option<u32>,
    /// How many dropped kids the metric already counts (the batch counts since the VM began).
    dropped_kids_counted: u64,
}

/// Shadow differences by (label, denied).
type ShadowCounts = BTreeMap<(String, bool), u64>;

/// How long a shadow report may take; the next tick's report carries what a failed one held.
const SHADOW_REPORT_TIMEOUT: Duration = Duration::from_secs(2);

impl StagedoorRoot {
    pub fn new(context_id: u32) -> Self {
        Self {
            context_id,
            policy: None,
            state: None,
            held: Rc::default(),
            answered_here: AnsweredHere::default(),
            metrics: None,
            time: Rc::default(),
            revocation_call: None,
            last_revocation_sync_ms: None,
            shadow_report_call: None,
            key_report_call: None,
            dropped_kids_counted: 0,
        }
    }
}

thread_local! {
    // The newest list any root context of this VM received (a VM is single-threaded, so
    // this is per VM): a root context created for a new filter config starts from it.
    static VM_REVOCATIONS: RefCell<RevocationList> = RefCell::new(RevocationList::default());
}

fn remember_for_this_vm(list: &RevocationList) {
    VM_REVOCATIONS.with(|vm| *vm.borrow_mut() = list.clone());
}

fn error(message: &str) {
    host::log(LogLevel::Error, message);
}

impl Context for StagedoorRoot {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        if self.shadow_report_call.as_ref().is_some_and(|(token, _)| *token == token_id) {
            self.shadow_report_answered();
            return;
        }
        if self.key_report_call == Some(token_id) {
            // Fire and forget: what the control plane does with the kids reaches every
            // Envoy as a new filter config.
            self.key_report_call = None;
            return;
        }
        if self.revocation_call != Some(token_id) {
            // A stale cache entry's refresh, sent on a tick.
            if let Some(m) = &self.metrics {
                if self.answered_here.edge_cache.borrow_mut().on_response(token_id, num_headers, body_size, self.context_id, m) {
                    return;
                }
            }
            // A composite route's call sent when its held request was let go.
            let decided = self.answered_here.fanouts.borrow_mut().on_response(token_id, num_headers, body_size, now_ms());
            if let Some((context_id, reply)) = decided {
                deliver(context_id, &reply, self.context_id);
            }
            return;
        }
        self.revocation_call = None;
        let answered = matches!(host::call_response_header(":status"), Ok(Some(status)) if status == b"200");
        let update = answered
            .then(|| host::call_response_body(body_size).ok())
            .flatten()
            .and_then(|body| serde_json::from_slice::<RevocationUpdate>(&body).ok());
        let (Some(update), Some(state)) = (update, &self.state) else {
            // The last list stays in force; the staleness gauge shows for how long.
            if let Some(m) = &self.metrics {
                m.bump(m.revocation_sync_failures);
            }
            return;
        };
        let cursor_before = state.borrow().revocations.cursor();
        let wait_ms = self.policy.as_ref().and_then(|p| p.revocation.as_ref()).map_or(0, |rev| rev.wait_ms);
        let again = poll_again_now(wait_ms, &update, cursor_before);
        let changed = update.full || !update.revoked.is_empty() || !state.borrow().revocations.has_synced();
        // Cache purges travel in the same feed (stagedoor_filter_core::response_cache::Purge).
        let purged = self.answered_here.edge_cache.borrow_mut().purge(update.revoked.iter());
        if purged > 0 {
            host::log(LogLevel::Info, &format!("stagedoor: cache purge dropped {purged} entries"));
        }
        let (entries, released) = {
            let mut state = state.borrow_mut();
            state.revocations.apply(update);
            if changed {
                remember_for_this_vm(&state.revocations);
            }
            let released = self.held.borrow_mut().release_all(&state.revocations);
            (state.revocations.len(), released)
        };
        self.last_revocation_sync_ms = Some(now_ms());
        if let Some(m) = &self.metrics {
            m.set(m.revocation_entries, entries as u64);
            m.set(m.revocation_staleness_ms, 0);
        }
        self.release(released);
        if again {
            self.poll_revocations(false);
        }
    }
}

impl StagedoorRoot {
    /// Asks the control plane for the revocations since the list's cursor (one callout at
    /// a time; a slow control plane is not piled onto), held open by it up to the config's
    /// `wait_ms` when nothing changed (stagedoor_filter_core::feed_poll). `early`: a try before the cluster
    /// may exist (Envoy still starting), whose failure is neither logged nor counted.
    #[inline(never)] // a tick and a configure stay small functions: stagedoor_filter_core::policy `OUT_OF_LINE`
    fn poll_revocations(&mut self, early: bool) {
        let Some(rev) = self.policy.as_ref().and_then(|p| p.revocation.clone()) else { return };
        if self.revocation_call.is_some() {
            return;
        }
        let cursor = self.state.as_ref().map(|s| s.borrow().revocations.cursor()).unwrap_or(0);
        let path = feed_path(&rev.path, cursor, rev.wait_ms);
        let headers = vec![(":method", "GET"), (":path", path.as_str()), (":authority", rev.authority.as_str())];
        match host::dispatch_http_call(&rev.cluster, headers, None, callout_timeout(rev.wait_ms)) {
            Ok(token) => self.revocation_call = Some(token),
            Err(_) if early => {}
            Err(e) => {
                host::log(LogLevel::Warn, &format!("stagedoor: revocation poll not sent: {e}"));
                if let Some(m) = &self.metrics {
                    m.bump(m.revocation_sync_failures);
                }
            }
        }
    }

    /// Posts the shadow differences counted since the last report to the control plane (one
    /// at a time, on the tick: never a callout per request). Needs the revocation feed's
    /// cluster; without one the counts are in Envoy's stats only.
    #[inline(never)] // a tick and a configure stay small functions: stagedoor_filter_core::policy `OUT_OF_LINE`
    fn report_shadow(&mut self) {
        // Checked before anything is copied: on most ticks (and always without shadow
        // rules) there is nothing to send, and the tick then costs one branch.
        if self.shadow_report_call.is_some() || !self.metrics.as_ref().is_some_and(|m| m.has_unreported_shadow()) {
            return;
        }
        let (Some(rev), Some(metrics)) = (self.policy.as_ref().and_then(|p| p.revocation.clone()), self.metrics.clone()) else { return };
        let counts = metrics.take_unreported_shadow();
        if counts.is_empty() {
            return;
        }
        let mut report = ShadowReport::default();
        for ((label, denied), n) in &counts {
            let count = report.counts.entry(label.clone()).or_default();
            if *denied {
                count.denied += n;
            } else {
                count.allowed += n;
            }
        }
        let body = serde_json::to_vec(&report).unwrap_or_default();
        let headers = vec![
            (":method", "POST"),
            (":path", SHADOW_REPORT_PATH),
            (":authority", rev.authority.as_str()),
            ("content-type", "application/json"),
        ];
        match host::dispatch_http_call(&rev.cluster, headers, Some(&body), SHADOW_REPORT_TIMEOUT) {
            Ok(token) => self.shadow_report_call = Some((token, counts)),
            Err(e) => {
                host::log(LogLevel::Warn, &format!("stagedoor: shadow report not sent: {e}"));
                metrics.unreported_again(counts);
            }
        }
    }

    /// A report the control plane did not take (any status but 204) goes again next tick.
    fn shadow_report_answered(&mut self) {
        let Some((_, counts)) = self.shadow_report_call.take() else { return };
        let taken = matches!(host::call_response_header(":status"), Ok(Some(status)) if status == b"204");
        if !taken {
            if let Some(metrics) = &self.metrics {
                metrics.unreported_again(counts);
            }
        }
    }

    /// Sends the kids tokens named that no key has (stagedoor_filter_core::key_reports),
    /// one batch per tick at most, never waited for by a request.
    #[inline(never)] // a tick and a configure stay small functions: stagedoor_filter_core::policy `OUT_OF_LINE`
    fn report_unknown_keys(&mut self) {
        if self.key_report_call.is_some() || self.state.as_ref().is_none_or(|s| s.borrow().key_reports.is_empty()) {
            return;
        }
        let (Some(report), Some(state)) = (self.policy.as_ref().and_then(|p| p.key_report.clone()), &self.state) else { return };
        let (batch, dropped) = {
            let mut state = state.borrow_mut();
            (state.key_reports.take(), state.key_reports.dropped())
        };
        let body = report_body(&batch);
        let headers = vec![
            (":method", "POST"),
            (":path", report.path.as_str()),
            (":authority", report.authority.as_str()),
            ("content-type", "application/json"),
        ];
        if let Some(m) = &self.metrics {
            m.add(m.unknown_kids_dropped, dropped.saturating_sub(self.dropped_kids_counted));
        }
        self.dropped_kids_counted = dropped;
        match host::dispatch_http_call(&report.cluster, headers, Some(&body), KEY_REPORT_TIMEOUT) {
            Ok(token) => {
                self.key_report_call = Some(token);
                if let Some(m) = &self.metrics {
                    m.add(m.unknown_kids_reported, batch.len() as u64);
                }
            }
            // Dropped: the next token with the kid reports it again.
            Err(e) => host::log(LogLevel::Warn, &format!("stagedoor: unknown-kid report not sent: {e}")),
        }
    }

    /// Lets held requests go on, or answers them, each in its own context.
    #[inline(never)] // a tick and a configure stay small functions: stagedoor_filter_core::policy `OUT_OF_LINE`
    fn release(&self, released: Vec<(u32, Release)>) {
        if released.is_empty() {
            return;
        }
        let now = now_ms() as i64;
        for (context_id, release) in released {
            // A request whose client left has no context any more: nothing to do.
            if host::set_effective_context(context_id).is_err() {
                continue;
            }
            let parked = self.answered_here.fanouts.borrow_mut().take_parked(context_id);
            let result = match (release, parked) {
                // A composite route's request: its calls go out now (from here, so their
                // answers come to the root context).
                (Release::Continue, Some(pending)) => {
                    let reply = self.answered_here.fanouts.borrow_mut().start(context_id, pending, now_ms());
                    if let Some(reply) = reply {
                        deliver(context_id, &reply, context_id);
                    }
                    Ok(())
                }
                (Release::Continue, None) => host::resume_request(),
                (Release::Refuse(denial, request_id), _) => {
                    refuse_or_stop(&mut CurrentRequest, &denial, &request_id, now);
                    Ok(())
                }
                (Release::LeaveToBodyCheck, _) => Ok(()),
            };
            if let Err(e) = result {
                error(&format!("stagedoor: a held request could not be resumed: {e}"));
            }
        }
        let _ = host::set_effective_context(self.context_id);
    }

    #[inline(never)] // a tick and a configure stay small functions: stagedoor_filter_core::policy `OUT_OF_LINE`
    fn configure(&mut self) -> Result<(), String> {
        let bytes = host::plugin_configuration().map_err(|e| format!("no plugin configuration: {e}"))?;
        let config = FilterConfig::from_json(&bytes).map_err(|e| format!("config is not valid JSON for this filter: {e}"))?;
        let policy = Policy::compile(&config).map_err(|e| format!("config refused: {e}"))?;
        host::log(LogLevel::Info, &format!("stagedoor: config {} loaded", policy.config_version));
        // A new config may carry new keys or roles: cached identities start over, the
        // revocation list carries on, also into a new root context of this VM (Envoy makes
        // one per filter config; only a new VM holds requests until its first list arrives,
        // see stagedoor_filter_core::hold).
        let revocations = match self.state.take() {
            Some(state) => state.borrow().revocations.clone(),
            None => VM_REVOCATIONS.with(|list| list.borrow().clone()),
        };
        self.state = Some(Rc::new(RefCell::new(FilterState {
            cache: TokenCache::new(policy.token_cache_entries),
            revocations,
            key_reports: KeyReports::default(),
        })));
        self.dropped_kids_counted = 0;
        if self.metrics.is_none() {
            self.metrics = Some(Rc::new(Metrics::define()));
        }
        let feed = policy.revocation.as_ref().map(|rev| (rev.poll_interval_ms, rev.wait_ms));
        let tick = tick_period(feed, METRICS_FLUSH);
        host::set_tick_period(tick).map_err(|e| format!("no tick: {e}"))?;
        self.time.set_tick(tick);
        self.time.set(now_ms());
        self.policy = Some(Rc::new(policy));
        self.answered_here.edge_cache = Rc::default();
        Ok(())
    }
}

impl RootContext for StagedoorRoot {
    /// Refusing a bad config (returning false) makes Envoy reject the listener update, so
    /// the control plane sees a NACK and the last good config keeps serving.
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        if let Err(e) = self.configure() {
            error(&format!("stagedoor: {e}"));
            return false;
        }
        // A new VM (Envoy starting, or reloading a failed one) knows no revocations yet:
        // ask at once rather than a tick from now. If the cluster is not there yet, the
        // tick retries.
        self.poll_revocations(true);
        true
    }

    fn on_tick(&mut self) {
        let now = now_ms();
        self.time.set(now);
        if let Some(m) = &self.metrics {
            self.answered_here.edge_cache.borrow_mut().tick(self.context_id, m);
            m.flush();
        }
        if let (Some(m), Some(last)) = (&self.metrics, self.last_revocation_sync_ms) {
            m.set(m.revocation_staleness_ms, now.saturating_sub(last));
        }
        let overdue = self.held.borrow_mut().release_overdue(now);
        self.release(overdue);
        self.poll_revocations(false);
        self.report_shadow();
        self.report_unknown_keys();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Never `None` (the SDK panics on it): without a policy, every request is refused.
        let context: Box<dyn HttpContext> = match (&self.policy, &self.state, &self.metrics) {
            (Some(policy), Some(state), Some(metrics)) => Box::new(StagedoorHttp::new(
                context_id,
                self.time.clone(),
                policy.clone(),
                state.clone(),
                self.held.clone(),
                metrics.clone(),
                self.answered_here.clone(),
            )),
            _ => Box::new(Unconfigured),
        };
        Some(context)
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
