//! The per-request context: read the request, ask the policy, apply the decision.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use stagedoor_filter_core::{decide, Decision, Policy, RequestView};

pub struct StagedoorHttp {
    policy: Rc<Policy>,
}

impl StagedoorHttp {
    pub fn new(policy: Rc<Policy>) -> Self {
        Self { policy }
    }
}

impl Context for StagedoorHttp {}

impl HttpContext for StagedoorHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        match decide(&self.policy, &RequestView { path: &path }) {
            Decision::Forward { set } => {
                for (name, value) in set {
                    self.set_http_request_header(name, Some(&value));
                }
                Action::Continue
            }
        }
    }
}
