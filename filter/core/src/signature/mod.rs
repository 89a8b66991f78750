//! Signed service-to-service requests, checked at the edge (issue 15).
//!
//! A caller signs each request with its own key, named by `x-signature-key-id`:
//! `x-signature` is HMAC-SHA256 over the canonical string ([`canonical_string`]) in hex or
//! base64, `x-timestamp` the unix time it signed at. The head is checked as soon as it
//! arrives (a missing header, an unknown key or a stale timestamp is refused before any
//! body is buffered); the MAC once the whole body is here; then the signature's single use
//! across every Envoy ([`replay`]). Only routes and services that require signatures buffer
//! their bodies for it.

mod compile;
pub mod config;
pub mod replay;
mod verify;
#[cfg(test)]
mod tests;


pub use compile::{SignaturePolicy, SignedRoutes, SigningKey};
pub use config::*;
pub use verify::{canonical_string, check_signed_head, decode_signature, sign, PendingSignature, SignatureError, Verified};

/// The signature a request's route asks for, checked as far as its head allows:
/// `Ok(Some(pending))` when the body must still be verified, `Ok(None)` when the route
/// needs no signature. `now` (unix seconds) is asked for only when the route needs one:
/// in the filter it is a host call, which every other request would pay for nothing.
#[inline(never)] // kept out of the request-headers callback (policy.rs `OUT_OF_LINE`)
pub fn check_request_head(
    policy: &crate::Policy,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    now: impl FnOnce() -> i64,
) -> Result<Option<PendingSignature>, SignatureError> {
    // Every request comes here: without signed_requests (the compiler then allows no signed
    // service) it costs one check, not a second service lookup.
    if policy.signatures.is_none() {
        return Ok(None);
    }
    let path = crate::path::strip_query(target);
    let Some(service) = policy.service_for(path).filter(|s| !s.signed.is_empty()) else { return Ok(None) };
    // A path without readings was refused by the decision already.
    let Ok(readings) = crate::path::PathReadings::read(path) else { return Ok(None) };
    if !service.signed.require(method, &readings) {
        return Ok(None);
    }
    // Checked above; refusing is the fail-closed answer should it change.
    let Some(signatures) = &policy.signatures else { return Err(SignatureError::UnknownKey) };
    check_signed_head(signatures, method, target, headers, now()).map(Some)
}
