//! The per-request context: read the request once, ask the policy, apply the decision.
//! Response headers are not touched here: Envoy strips internal ones natively (see the
//! control plane's `translate/listener.rs`).

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use stagedoor_filter_core::decision::{RequestId, STATEMENT_HEADER};
use stagedoor_filter_core::reply::Denial;
use stagedoor_filter_core::webhook::{verify_stripe, WebhookError};
use stagedoor_filter_core::clock::Clock;
use stagedoor_filter_core::fast_bytes::bytes_eq;
use stagedoor_filter_core::{decide_at, header_map, Decision, FilterState, Policy, RequestView};

use crate::metrics::Metrics;
use crate::time::CoarseTime;

pub struct StagedoorHttp {
    time: Rc<CoarseTime>,
    policy: Rc<Policy>,
    state: Rc<RefCell<FilterState>>,
    metrics: Rc<Metrics>,
    /// A webhook whose signature is checked once the whole body is here: (index into the
    /// policy's webhooks, the Stripe-Signature header, the request id for a refusal).
    pending_webhook: Option<(usize, Option<String>, String)>,
}

impl StagedoorHttp {
    pub fn new(time: Rc<CoarseTime>, policy: Rc<Policy>, state: Rc<RefCell<FilterState>>, metrics: Rc<Metrics>) -> Self {
        Self { time, policy, state, metrics, pending_webhook: None }
    }
}

impl StagedoorHttp {
    fn now_ms(&self) -> i64 {
        crate::time::now_ms(self) as i64
    }

    fn refuse(&self, denial: &Denial, request_id: &str, now_ms: i64) {
        let body = denial.body(request_id, now_ms);
        let mut reply_headers = denial.headers();
        reply_headers.push(("content-type", "application/json"));
        self.send_http_response(u32::from(denial.status), reply_headers, Some(body.as_bytes()));
    }

    /// Verifies the pending webhook against the raw body: passes it on, or answers 400.
    fn check_webhook(&mut self, body: &[u8]) -> Action {
        let Some((index, signature, request_id)) = self.pending_webhook.take() else { return Action::Continue };
        let now_ms = self.now_ms();
        // A webhook index always comes from this policy; a missing one refuses (fail closed).
        let secret = self.policy.webhooks.get(index).map(|(_, secret)| secret.as_slice()).unwrap_or_default();
        match verify_stripe(secret, signature.as_deref(), body, now_ms / 1000) {
            Ok(()) if !secret.is_empty() => Action::Continue,
            result => {
                let error = result.err().unwrap_or(WebhookError::BadSignature);
                let denial = Denial { status: 400, code: error.code(), message: error.message().to_owned() };
                self.refuse(&denial, &request_id, now_ms);
                Action::Pause
            }
        }
    }
}

impl Context for StagedoorHttp {}

impl HttpContext for StagedoorHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // One read of the whole map (cheaper than several single reads, and the only way
        // to see repeated headers), kept as the host wrote it and read in place.
        let raw = crate::host::request_header_bytes();
        let Some(headers) = raw.as_deref().and_then(|raw| header_map::parse(raw).ok()) else {
            // A host failure, never a client's doing; refused so nothing unchecked passes.
            self.refuse(&header_map::unreadable(), "unavailable", self.now_ms());
            return Action::Pause;
        };
        let pseudo = |name: &str| headers.iter().find(|(n, _)| bytes_eq(n.as_bytes(), name.as_bytes())).map_or("", |(_, v)| *v);
        let request = RequestView { method: pseudo(":method"), path: pseudo(":path"), headers: &headers };
        let outcome = {
            let (coarse, slack) = self.time.get();
            let mut exact = || self.now_ms() / 1000;
            let mut clock = Clock::new(coarse, slack, &mut exact);
            let mut state = self.state.borrow_mut();
            decide_at(&self.policy, &request, &mut clock, &mut state)
        };
        self.metrics.observe(&outcome.observed);
        if let RequestId::Replaced(id) = &outcome.request_id {
            self.set_http_request_header("x-request-id", Some(id));
        }
        let request_id = outcome.request_id.as_str();
        match outcome.decision {
            Decision::Forward { remove, identity, statement, sent, webhook } => {
                // One call per header (about 0.4 µs each) measured cheaper than replacing
                // the whole map (about 5 µs with a token-sized Authorization in it).
                for name in &remove {
                    self.set_http_request_header(name, None);
                }
                // A header the client did not send is added (no search for copies to
                // replace); one it did send is replaced, every copy at once.
                let put = |name: &str, value: &str| {
                    if sent.contains(name) {
                        self.set_http_request_header(name, Some(value));
                    } else {
                        self.add_http_request_header(name, value);
                    }
                };
                if let Some(identity) = &identity {
                    for (name, value) in identity.header_values() {
                        put(name, value);
                    }
                }
                if let Some(statement) = &statement {
                    put(STATEMENT_HEADER, statement);
                }
                if let Some(index) = webhook {
                    let signature = headers.iter().find(|(n, _)| *n == "stripe-signature").map(|(_, v)| (*v).to_owned());
                    self.pending_webhook = Some((index, signature, request_id.to_owned()));
                    if end_of_stream {
                        return self.check_webhook(&[]);
                    }
                    // Hold the request (headers included) until the body is verified.
                    return Action::Pause;
                }
                Action::Continue
            }
            Decision::Deny(denial) => {
                self.refuse(&denial, request_id, self.now_ms());
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.pending_webhook.is_none() {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause; // Envoy buffers until the whole body is here
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        self.check_webhook(&body)
    }

}
