//! Composite routes' calls in flight, for every context of the VM: dispatches a request's
//! source calls, routes each answer (to whichever context dispatched it, the request's own
//! or the root's for a request held for the revocation list) to its request's
//! [`Fanout`], and sends the reply once the core has decided it.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::types::LogLevel;
use stagedoor_filter_core::aggregate::{call_headers, Answer, Call, Composite, Fanout, Reply};

use crate::host;

/// A request's calls, ready to go.
pub struct Pending {
    pub composite: Rc<Composite>,
    pub calls: Vec<Call>,
    /// Exactly the identity headers (and signed statement) the decision produced.
    pub identity: Vec<(&'static str, String)>,
    pub request_id: String,
}

struct InFlight {
    composite: Rc<Composite>,
    fanout: Fanout,
}

#[derive(Default)]
pub struct Fanouts {
    /// Call token -> (the request's context, source index).
    calls: HashMap<u32, (u32, usize)>,
    in_flight: HashMap<u32, InFlight>,
    /// Requests held for the revocation list, whose calls go out when it arrives.
    parked: HashMap<u32, Pending>,
}

impl Fanouts {
    pub fn park(&mut self, context_id: u32, pending: Pending) {
        self.parked.insert(context_id, pending);
    }

    pub fn take_parked(&mut self, context_id: u32) -> Option<Pending> {
        self.parked.remove(&context_id)
    }

    /// A request that went away: its answers are dropped when they come.
    pub fn forget(&mut self, context_id: u32) {
        self.parked.remove(&context_id);
        self.in_flight.remove(&context_id);
        self.calls.retain(|_, (context, _)| *context != context_id);
    }

    /// Sends every call of `pending` at once; returns the reply if it is decided already
    /// (a required call that could not be sent).
    pub fn start(&mut self, context_id: u32, pending: Pending, now_ms: u64) -> Option<Reply> {
        let Pending { composite, calls, identity, request_id } = pending;
        let mut fanout = Fanout::new(&composite, now_ms, &request_id);
        for call in &calls {
            let headers = call_headers(call, &identity, &request_id);
            match host::dispatch_http_call(&call.cluster, headers, None, Duration::from_millis(call.timeout_ms)) {
                Ok(token) => {
                    self.calls.insert(token, (context_id, call.source));
                }
                Err(e) => {
                    host::log(LogLevel::Warn, &format!("stagedoor: composite {} call to {} not sent: {e}", composite.name, call.cluster));
                    if let Some(reply) = fanout.record(&composite, call.source, Answer::Nothing, now_ms) {
                        self.forget(context_id);
                        return Some(reply);
                    }
                }
            }
        }
        self.in_flight.insert(context_id, InFlight { composite, fanout });
        None
    }

    /// Reads the answer to call `token` (in its callback) and returns the request's context
    /// and reply once the reply is decided (a token that is not a composite's: nothing).
    pub fn on_response(&mut self, token: u32, num_headers: usize, body_size: usize, now_ms: u64) -> Option<(u32, Reply)> {
        let (context_id, index) = self.calls.remove(&token)?;
        let flight = self.in_flight.get_mut(&context_id)?;
        let status = (num_headers > 0)
            .then(|| host::call_response_header(":status").ok().flatten())
            .flatten()
            .and_then(|s| std::str::from_utf8(&s).ok().and_then(|s| s.parse::<u16>().ok()));
        let answer = match status {
            None => Answer::Nothing,
            Some(status) if body_size > flight.fanout.body_limit(&flight.composite) => Answer::TooLarge { status, size: body_size },
            Some(status) => match host::call_response_body(body_size) {
                Ok(body) => Answer::Response { status, body },
                Err(_) => Answer::Nothing,
            },
        };
        let reply = flight.fanout.record(&flight.composite, index, answer, now_ms)?;
        self.forget(context_id);
        Some((context_id, reply))
    }
}

/// Sends a composite's reply to its request, from whichever context runs now (`current`).
pub fn deliver(context_id: u32, reply: &Reply, current: u32) {
    let switch = context_id != current;
    if switch && host::set_effective_context(context_id).is_err() {
        return; // the client left
    }
    // A failed reply leaves the request paused; Envoy's stream timeout ends it (fail closed).
    if let Err(e) = host::send_reply(reply.status, &reply.headers, &reply.body) {
        host::log(LogLevel::Error, &format!("stagedoor: composite reply not sent: {e}"));
    }
    if switch {
        let _ = host::set_effective_context(current);
    }
}
