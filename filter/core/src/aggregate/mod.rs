//! Composite routes (issue 14): a GET the filter answers itself, after authentication and
//! RBAC, by calling several services at once through their Envoy clusters with exactly the
//! identity it verified, and composing their JSON answers under one deadline.
//!
//! Why in the filter, not a service behind its own cluster: the identity is already
//! verified here (a separate aggregator would re-verify or trust a header), the calls go
//! through each service's cluster (outlier detection, circuit breakers) either way, and no
//! extra hop is paid. The pure parts live here; `filter/wasm/src/fanout.rs` only dispatches
//! the calls and sends the reply.

mod compile;
mod compose;
pub mod config;
mod template;

pub use compile::{Call, Composite, CompositeError, Source};
pub use compose::{Answer, Fanout, Reply, COMPLETED_HEADER};
pub use template::{is_plain_param, PathTemplate, TemplateError, UnsafeParam};

/// The headers of one source call: the pseudo-headers, the request id and exactly the
/// identity headers the filter set for this request (never one the client sent).
pub fn call_headers<'a>(call: &'a Call, identity: &'a [(&'static str, String)], request_id: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![(":method", "GET"), (":path", call.path.as_str()), (":authority", call.authority.as_str())];
    if !request_id.is_empty() {
        headers.push(("x-request-id", request_id));
    }
    headers.extend(identity.iter().map(|(name, value)| (*name, value.as_str())));
    headers
}

#[cfg(test)]
mod tests;
