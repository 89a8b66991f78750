//! One pure function per request: given the compiled policy and what the request looks like,
//! say what the filter must do.

use crate::path::strip_query;
use crate::policy::Policy;

/// What the filter read from the request: the normalized path, and nothing it does not need.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// `:path` as Envoy hands it over (after its normalization), query included.
    pub path: &'a str,
}

/// What the filter must do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let it through after setting these headers (each replaces every client copy).
    Forward { set: Vec<(&'static str, String)> },
}

pub const GATEWAY_FORWARDED: &str = "x-gateway-forwarded";

pub fn decide(policy: &Policy, request: &RequestView<'_>) -> Decision {
    let path = strip_query(request.path);
    let _service = policy.service_for(path);
    Decision::Forward { set: vec![(GATEWAY_FORWARDED, String::from("true"))] }
}
