//! The per-request context: read the request once, ask the policy, apply the decision.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use stagedoor_filter_core::headers::removes_response_header;
use stagedoor_filter_core::{decide, Decision, FilterState, Policy, RequestView};

use crate::metrics::Metrics;

pub struct StagedoorHttp {
    policy: Rc<Policy>,
    state: Rc<RefCell<FilterState>>,
    metrics: Rc<Metrics>,
    /// Set when this filter answered the request itself: its own reply keeps its headers.
    replied: bool,
}

impl StagedoorHttp {
    pub fn new(policy: Rc<Policy>, state: Rc<RefCell<FilterState>>, metrics: Rc<Metrics>) -> Self {
        Self { policy, state, metrics, replied: false }
    }
}

impl Context for StagedoorHttp {}

impl HttpContext for StagedoorHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // One read of the whole map (cheaper than several single reads, and the only way
        // to see repeated headers).
        let headers = self.get_http_request_headers();
        let pseudo = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or("");
        let now_ms = self.get_current_time().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        let request = RequestView { method: pseudo(":method"), path: pseudo(":path"), headers: &headers };
        let outcome = {
            let mut state = self.state.borrow_mut();
            decide(&self.policy, &request, now_ms / 1000, &mut state)
        };
        self.metrics.observe(&outcome.observed);
        match outcome.decision {
            Decision::Forward { remove, set } => {
                for name in &remove {
                    self.set_http_request_header(name, None);
                }
                for (name, value) in &set {
                    self.set_http_request_header(name, Some(value));
                }
                Action::Continue
            }
            Decision::Deny(denial) => {
                let body = denial.body(pseudo("x-request-id"), now_ms);
                let mut reply_headers = denial.headers();
                reply_headers.push(("content-type", "application/json"));
                self.replied = true;
                self.send_http_response(u32::from(denial.status), reply_headers, Some(body.as_bytes()));
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Continue;
        }
        for (name, _) in self.get_http_response_headers() {
            if removes_response_header(&name) {
                self.set_http_response_header(&name, None);
            }
        }
        Action::Continue
    }
}
