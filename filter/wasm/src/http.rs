//! The per-request context: read the request once, ask the policy, apply the decision
//! (`stagedoor_filter_core::apply`), hold it if the revocation list is not known yet.
//! Response headers are not touched here: Envoy strips internal ones natively (see the
//! control plane's `translate/listener.rs`).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};
use stagedoor_filter_core::apply::{apply, host_failure, refuse_or_stop, Next};
use stagedoor_filter_core::clock::Clock;
use stagedoor_filter_core::fast_bytes::bytes_eq;
use stagedoor_filter_core::headers::is_forbidden_trailer;
use stagedoor_filter_core::hold::{awaiting_revocations, revocations_unavailable, HeldRequests};
use stagedoor_filter_core::path::strip_query;
use stagedoor_filter_core::reply::Denial;
use stagedoor_filter_core::signature::replay::{self, ReplayVerdict};
use stagedoor_filter_core::signature::{self, PendingSignature, SignatureError, Verified};
use stagedoor_filter_core::validation::{check_request_head, validation_reply, PendingBody, ValidationFailure};
use stagedoor_filter_core::webhook::{verify_stripe, WebhookError};
use stagedoor_filter_core::aggregate::Composite;
use stagedoor_filter_core::response_cache::{CacheRequest, CacheRoute};
use stagedoor_filter_core::{decide_at, header_map, Decision, FilterState, Outcome, Policy, RequestView};

use crate::cache_fetch::{mark_bypass, EdgeCache, Served};
use crate::fanout::{deliver, Fanouts, Pending};
use crate::host::{self, CurrentRequest};
use crate::metrics::Metrics;
use crate::time::CoarseTime;

/// The VM's state for requests the filter answers itself (composite routes, cached
/// answers), shared by every context.
#[derive(Clone, Default)]
pub struct AnsweredHere {
    pub fanouts: Rc<RefCell<Fanouts>>,
    pub edge_cache: Rc<RefCell<EdgeCache>>,
}

pub struct StagedoorHttp {
    context_id: u32,
    time: Rc<CoarseTime>,
    policy: Rc<Policy>,
    state: Rc<RefCell<FilterState>>,
    held: Rc<RefCell<HeldRequests>>,
    metrics: Rc<Metrics>,
    /// A webhook whose signature is checked once the whole body is here: (index into the
    /// policy's webhooks, the Stripe-Signature header, the request id for a refusal).
    pending_webhook: Option<(usize, Option<String>, String)>,
    /// A route whose body schema the body is checked against once it is all here, and the
    /// request id for a refusal.
    pending_validation: Option<(PendingBody, String)>,
    /// A signed request whose MAC is checked once the body is here, and the request id.
    pending_signature: Option<(PendingSignature, String)>,
    /// The replay check in flight: the gRPC call's token and the request id.
    replay_call: Option<(u32, String)>,
    fanouts: Rc<RefCell<Fanouts>>,
    /// A composite route this request is answered by: nothing of it goes upstream.
    composite: bool,
    edge_cache: Rc<RefCell<EdgeCache>>,
    /// The request went to the response cache (it may wait there or lead a fetch): only
    /// then has the cache anything of this context to forget.
    edge_cached: bool,
}

fn now_ms() -> i64 {
    host::now_ms() as i64
}

fn action(next: Next) -> Action {
    match next {
        Next::Continue => Action::Continue,
        Next::Stop => Action::Pause,
    }
}

impl StagedoorHttp {
    pub fn new(
        context_id: u32,
        time: Rc<CoarseTime>,
        policy: Rc<Policy>,
        state: Rc<RefCell<FilterState>>,
        held: Rc<RefCell<HeldRequests>>,
        metrics: Rc<Metrics>,
        answered_here: AnsweredHere,
    ) -> Self {
        let AnsweredHere { fanouts, edge_cache } = answered_here;
        Self {
            context_id,
            time,
            policy,
            state,
            held,
            metrics,
            pending_webhook: None,
            pending_validation: None,
            pending_signature: None,
            replay_call: None,
            fanouts,
            composite: false,
            edge_cache,
            edge_cached: false,
        }
    }

    /// Answers an authorized request to a composite route: its calls go out now, or once
    /// the revocation list is known (a held request's token must not reach any service
    /// before it is checked).
    fn aggregate(&mut self, composite: Rc<Composite>, outcome: &Outcome<'_>, path: &str) -> Action {
        self.composite = true;
        let request_id = outcome.request_id.as_str();
        let params = composite.matches(strip_query(path)).unwrap_or_default();
        let calls = match composite.calls(&params) {
            Ok(calls) => calls,
            Err(unsafe_param) => {
                let denial = Denial { status: 400, code: "INVALID_PATH_PARAM", message: unsafe_param.to_string() };
                return self.refuse(&denial, request_id);
            }
        };
        let pending = Pending { composite, calls, identity: outcome.decision.headers_to_set(), request_id: request_id.to_owned() };
        let awaiting = awaiting_revocations(&self.policy, &self.state.borrow().revocations, &outcome.decision)
            .map(|(key, family)| (key.to_owned(), family.map(str::to_owned)));
        if let Some((key, family)) = &awaiting {
            if !self.held.borrow_mut().hold(self.context_id, (key, family.as_deref()), request_id, host::now_ms(), false) {
                return self.refuse(&revocations_unavailable(), request_id);
            }
            self.metrics.held();
            self.fanouts.borrow_mut().park(self.context_id, pending);
            return Action::Pause;
        }
        let reply = self.fanouts.borrow_mut().start(self.context_id, pending, host::now_ms());
        if let Some(reply) = reply {
            deliver(self.context_id, &reply, self.context_id);
        }
        Action::Pause
    }

    fn refuse(&self, denial: &Denial, request_id: &str) -> Action {
        action(refuse_or_stop(&mut CurrentRequest, denial, request_id, now_ms()))
    }

    fn refuse_invalid(&self, failure: &ValidationFailure, request_id: &str) -> Action {
        self.held.borrow_mut().forget(self.context_id);
        self.metrics.validation_refused();
        let (status, body) = validation_reply(failure, request_id, now_ms());
        let headers = [("content-type", "application/json"), ("cache-control", "no-store")];
        // A failed reply leaves the request paused; Envoy's stream timeout ends it (fail closed).
        let _ = host::send_reply(status, &headers, &body);
        Action::Pause
    }

    fn refuse_signature(&self, error: SignatureError, request_id: &str) -> Action {
        self.held.borrow_mut().forget(self.context_id);
        self.metrics.signature_refused(error);
        self.refuse(&error.denial(), request_id)
    }

    /// Checks the whole body: the signature's MAC, the route's schema, the webhook's
    /// signature, each that is pending; then spends a verified signature (its replay check),
    /// or lets the request go on.
    fn check_body(&mut self, body: &[u8]) -> Action {
        let mut verified = None;
        if let Some((pending, request_id)) = self.pending_signature.take() {
            match pending.verify(body) {
                Ok(v) => verified = Some((v, request_id)),
                Err(e) => return self.refuse_signature(e, &request_id),
            }
        }
        if let Some((pending, request_id)) = self.pending_validation.take() {
            if let Err(failure) = pending.check(body) {
                return self.refuse_invalid(&failure, &request_id);
            }
        }
        if let Some(refusal) = self.check_webhook(body) {
            return refusal;
        }
        match verified {
            // Only a signature that verified takes a replay slot.
            Some((verified, request_id)) => self.spend_signature(&verified, request_id),
            None => self.body_done(),
        }
    }

    /// Every body check passed: the request goes on, unless it still waits for the
    /// revocation list (whose arrival lets it go).
    fn body_done(&self) -> Action {
        if self.held.borrow_mut().body_checked(self.context_id) { Action::Pause } else { Action::Continue }
    }

    /// Verifies the pending webhook against the raw body; `Some(refusal)` if it fails.
    fn check_webhook(&mut self, body: &[u8]) -> Option<Action> {
        let (index, signature, request_id) = self.pending_webhook.take()?;
        // A webhook index always comes from this policy; a missing one refuses (fail closed).
        let secret = self.policy.webhooks.get(index).map(|(_, secret)| secret.as_slice()).unwrap_or_default();
        match verify_stripe(secret, signature.as_deref(), body, now_ms() / 1000) {
            Ok(()) if !secret.is_empty() => None,
            result => {
                self.held.borrow_mut().forget(self.context_id);
                let error = result.err().unwrap_or(WebhookError::BadSignature);
                let denial = Denial { status: 400, code: error.code(), message: error.message().to_owned() };
                Some(self.refuse(&denial, &request_id))
            }
        }
    }

    /// Asks the RateLimitService whether this is the signature's first use; the request
    /// waits for the answer (`on_grpc_call_response`).
    fn spend_signature(&mut self, verified: &Verified, request_id: String) -> Action {
        // Signatures verified only under a policy with keys; without one, fail closed.
        let Some(signatures) = &self.policy.signatures else { return self.refuse_signature(SignatureError::ReplayUnavailable, &request_id) };
        let window_ms = u64::try_from(signatures.replay_window_secs()).unwrap_or(u64::MAX).saturating_mul(1000);
        let message = replay::rate_limit_request(&verified.replay_digest, window_ms);
        let upstream = replay::grpc_service(&signatures.replay.cluster);
        let timeout = Duration::from_millis(signatures.replay.timeout_ms);
        match host::dispatch_grpc_call(&upstream, replay::SERVICE, replay::METHOD, &message, timeout) {
            Ok(token) => {
                self.replay_call = Some((token, request_id));
                Action::Pause
            }
            Err(e) => {
                host::log(LogLevel::Warn, &format!("stagedoor: replay check not sent: {e}"));
                self.refuse_signature(SignatureError::ReplayUnavailable, &request_id)
            }
        }
    }
}

impl Drop for StagedoorHttp {
    fn drop(&mut self) {
        // A held request whose client went away is not released later.
        if let Ok(mut held) = self.held.try_borrow_mut() {
            held.forget(self.context_id);
        }
        // Only a composite or cached request left anything there; every other request
        // would search both maps for nothing.
        if self.composite {
            if let Ok(mut fanouts) = self.fanouts.try_borrow_mut() {
                fanouts.forget(self.context_id);
            }
        }
        if self.edge_cached {
            if let Ok(mut cache) = self.edge_cache.try_borrow_mut() {
                cache.forget(self.context_id, &self.metrics);
            }
        }
    }
}

impl Context for StagedoorHttp {
    /// The replay check's answer: the first use goes on, a reuse is refused, and no answer
    /// (an error, a timeout, a reply that does not read) refuses too: fail closed.
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let Some((token, request_id)) = self.replay_call.take() else { return };
        if token != token_id {
            self.replay_call = Some((token, request_id));
            return;
        }
        let verdict = match status_code {
            0 => host::grpc_response_body(response_size).map_or(ReplayVerdict::Unreadable, |body| replay::read_verdict(&body)),
            _ => ReplayVerdict::Unreadable,
        };
        match verdict {
            ReplayVerdict::FirstUse => {
                self.metrics.signature_verified();
                if self.body_done() == Action::Continue {
                    if let Err(e) = host::resume_request() {
                        host::log(LogLevel::Error, &format!("stagedoor: a signed request could not be resumed: {e}"));
                    }
                }
            }
            ReplayVerdict::Replayed => {
                self.refuse_signature(SignatureError::Replayed, &request_id);
            }
            ReplayVerdict::Unreadable => {
                if status_code != 0 {
                    host::log(LogLevel::Warn, &format!("stagedoor: replay check failed with gRPC status {status_code}"));
                }
                self.refuse_signature(SignatureError::ReplayUnavailable, &request_id);
            }
        }
    }

    /// A composite route's call answered (calls dispatched from this context come here).
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        // A cache miss's fetch (dispatched from this context too).
        if self.edge_cache.borrow_mut().on_response(token_id, num_headers, body_size, self.context_id, &self.metrics) {
            return;
        }
        let decided = self.fanouts.borrow_mut().on_response(token_id, num_headers, body_size, host::now_ms());
        if let Some((context_id, reply)) = decided {
            deliver(context_id, &reply, self.context_id);
        }
    }
}

impl HttpContext for StagedoorHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // One read of the whole map (cheaper than several single reads, and the only way
        // to see repeated headers), kept as the host wrote it and read in place.
        let raw = host::request_header_bytes();
        let Some(headers) = raw.as_deref().ok().and_then(|raw| header_map::parse(raw).ok()) else {
            // A host failure, never a client's doing; refused so nothing unchecked passes.
            self.metrics.refused();
            return self.refuse(&header_map::unreadable(), "unavailable");
        };
        let pseudo = |name: &str| headers.iter().find(|(n, _)| bytes_eq(n.as_bytes(), name.as_bytes())).map_or("", |(_, v)| *v);
        let request = RequestView { method: pseudo(":method"), path: pseudo(":path"), headers: &headers };
        let outcome = {
            let (coarse, slack) = self.time.get();
            let mut exact = || now_ms() / 1000;
            let mut clock = Clock::new(coarse, slack, &mut exact);
            let mut state = self.state.borrow_mut();
            decide_at(&self.policy, &request, &mut clock, &mut state)
        };
        self.metrics.observe(&outcome.observed);
        if let Some(difference) = &outcome.observed.shadow {
            // The route without its query (which may carry data), never the token.
            host::log(LogLevel::Info, &difference.log_line(request.method, strip_query(request.path)));
        }
        // Without composites (the usual policy) this is one branch, not a path search.
        if !self.policy.composites.is_empty() && matches!(outcome.decision, Decision::Forward { .. }) {
            if let Some(composite) = self.policy.composite_for(strip_query(request.path)).cloned() {
                return self.aggregate(composite, &outcome, request.path);
            }
        }
        if apply(&mut CurrentRequest, &outcome, &now_ms) == Next::Stop {
            return Action::Pause;
        }
        let request_id = outcome.request_id.as_str();
        let Decision::Forward { webhook, .. } = &outcome.decision else { return Action::Pause };
        // A request on a cached route's path that goes upstream (held, body-checked,
        // anonymous, not GET or HEAD, too many waiting) is answered `X-Cache: BYPASS`.
        // Without cached routes (the usual policy) this is one branch, not a path search.
        // Its route and service are found once, here (a policy handle of its own, so they
        // outlive the calls below that take the context mutably).
        let cache_policy = (!self.policy.cache_routes.is_empty()).then(|| Rc::clone(&self.policy));
        let on_cached_path = cache_policy.as_deref().and_then(|policy| policy.cache_route_on_path(strip_query(request.path)));
        let bypass = |metrics: &Metrics| {
            if let Some((route, _)) = on_cached_path {
                mark_bypass(&route.name, metrics);
            }
        };
        let validation = match check_request_head(&self.policy, request.method, request.path) {
            Ok(validation) => validation,
            Err(failure) => return self.refuse_invalid(&failure, request_id),
        };
        let signed = match signature::check_request_head(&self.policy, request.method, request.path, &headers, || now_ms() / 1000) {
            Ok(signed) => signed,
            Err(e) => return self.refuse_signature(e, request_id),
        };
        if let Some(pending) = &validation {
            // A declared length over the limit is refused before any of the body is buffered.
            let declared = headers.iter().find(|(n, _)| *n == "content-length").and_then(|(_, v)| v.parse::<usize>().ok());
            if let Some(failure) = declared.and_then(|length| pending.route.too_large(length)) {
                return self.refuse_invalid(&failure, request_id);
            }
        }
        let awaiting = awaiting_revocations(&self.policy, &self.state.borrow().revocations, &outcome.decision)
            .map(|(key, family)| (key.to_owned(), family.map(str::to_owned)));
        if let Some((key, family)) = &awaiting {
            // A signed request also waits for its replay check, body or not: the list's
            // arrival must not let it go before that answers.
            let awaiting_body = signed.is_some() || ((webhook.is_some() || validation.is_some()) && !end_of_stream);
            if !self.held.borrow_mut().hold(self.context_id, (key, family.as_deref()), request_id, host::now_ms(), awaiting_body) {
                return self.refuse(&revocations_unavailable(), request_id);
            }
            self.metrics.held();
        }
        if let Some(pending) = validation {
            self.pending_validation = Some((pending, request_id.to_owned()));
        }
        if let Some(pending) = signed {
            self.pending_signature = Some((pending, request_id.to_owned()));
        }
        if let Some(index) = *webhook {
            let signature = headers.iter().find(|(n, _)| *n == "stripe-signature").map(|(_, v)| (*v).to_owned());
            self.pending_webhook = Some((index, signature, request_id.to_owned()));
        }
        if self.pending_validation.is_some() || self.pending_webhook.is_some() || self.pending_signature.is_some() {
            bypass(&self.metrics);
            if end_of_stream {
                return self.check_body(&[]);
            }
            // Hold the request (headers included) until the body is checked.
            return Action::Pause;
        }
        if awaiting.is_some() {
            // Held: once let go it goes upstream, not through the cache.
            bypass(&self.metrics);
            return Action::Pause;
        }
        let Some((route, service)) = on_cached_path else { return Action::Continue };
        // Authenticated requests only: the key holds the verified tenant (and user). An
        // anonymous request (a public path) bypasses rather than sharing one "anonymous"
        // answer: the filter verified nothing about it, and the upstream may read what the
        // client sent (its Authorization, on a public path) where the fetch sends none.
        let Decision::Forward { identity: Some(identity), .. } = &outcome.decision else {
            bypass(&self.metrics);
            return Action::Continue;
        };
        if !CacheRoute::caches_method(request.method) {
            bypass(&self.metrics);
            return Action::Continue;
        }
        let path = strip_query(request.path);
        let query = request.path.split_once('?').map_or("", |(_, q)| q);
        let cache_request = CacheRequest {
            method: request.method,
            path,
            query,
            tenant: &identity.token.tenant,
            subject: &identity.token.subject,
            role: &identity.role,
            permissions: &identity.permissions,
            headers: &headers,
        };
        let identity_headers = outcome.decision.headers_to_set();
        self.edge_cached = true;
        let served =
            self.edge_cache.borrow_mut().serve(self.context_id, route, service, &cache_request, &identity_headers, request_id, &self.metrics);
        match served {
            Served::Paused => Action::Pause,
            Served::Proxied => {
                mark_bypass(&route.name, &self.metrics);
                Action::Continue
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.composite {
            return Action::Pause; // answered by the filter; nothing goes upstream
        }
        // Routes without a body schema, webhook or signature stream: this is the only work
        // they get.
        if self.pending_webhook.is_none() && self.pending_validation.is_none() && self.pending_signature.is_none() {
            return Action::Continue;
        }
        if let Some((pending, request_id)) = &self.pending_validation {
            // A chunked body is refused as soon as it passes the limit, not once buffered.
            if let Some(failure) = pending.route.too_large(body_size) {
                let request_id = request_id.clone();
                return self.refuse_invalid(&failure, &request_id);
            }
        }
        if !end_of_stream {
            return Action::Pause; // Envoy buffers until the whole body is here
        }
        match host::request_body(body_size) {
            Ok(body) => self.check_body(&body),
            Err(e) => {
                self.held.borrow_mut().forget(self.context_id);
                let webhook_id = self.pending_webhook.take().map(|(_, _, id)| id);
                let signature_id = self.pending_signature.take().map(|(_, id)| id);
                let request_id =
                    self.pending_validation.take().map(|(_, id)| id).or(webhook_id).or(signature_id).unwrap_or_default();
                self.refuse(&host_failure(&e), &request_id)
            }
        }
    }

    /// Trailers never carry what the gateway decides on or asserts (identity headers, the
    /// statement, Authorization, blocked headers): an upstream that merges trailers into
    /// headers must not find a client's copy there.
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let raw = match host::request_trailer_bytes() {
            Ok(raw) => raw,
            Err(e) => return self.refuse(&host_failure(&e), "unavailable"),
        };
        let Ok(trailers) = header_map::parse(&raw) else {
            return self.refuse(&header_map::unreadable(), "unavailable");
        };
        for (name, _) in trailers.iter().filter(|(name, _)| is_forbidden_trailer(name)) {
            if let Err(e) = host::remove_request_trailer(name) {
                host::log(LogLevel::Error, &format!("stagedoor: request trailer {name} not removed: {e}"));
                return self.refuse(&host_failure(&e), "unavailable");
            }
        }
        Action::Continue
    }
}

/// The context a VM without a policy hands out: every request is refused. Envoy never
/// sends requests before `on_configure` succeeded; this is the explicit deny should it.
pub struct Unconfigured;

impl Context for Unconfigured {}

impl HttpContext for Unconfigured {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let denial = Denial {
            status: 503,
            code: "GATEWAY_NOT_CONFIGURED",
            message: String::from("The gateway has no policy loaded"),
        };
        action(refuse_or_stop(&mut CurrentRequest, &denial, "unavailable", now_ms()))
    }
}
