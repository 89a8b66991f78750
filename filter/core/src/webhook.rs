//! Stripe webhook signatures, checked at the edge: `Stripe-Signature: t=<unix>,v1=<hex>`,
//! where v1 is HMAC-SHA256 with the endpoint secret over `<t>.<raw body>`. A forgery, a
//! replay older than the tolerance, or a missing header is refused before the payment
//! service sees the request.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Stripe's own default tolerance.
pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookError {
    MissingSignature,
    MalformedSignature,
    Expired,
    BadSignature,
}

impl WebhookError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingSignature => "WEBHOOK_SIGNATURE_MISSING",
            Self::MalformedSignature => "WEBHOOK_SIGNATURE_MALFORMED",
            Self::Expired => "WEBHOOK_SIGNATURE_EXPIRED",
            Self::BadSignature => "WEBHOOK_SIGNATURE_INVALID",
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            Self::MissingSignature => "Stripe-Signature header is required",
            Self::MalformedSignature => "Stripe-Signature header is malformed",
            Self::Expired => "Stripe-Signature timestamp is outside the tolerance",
            Self::BadSignature => "Stripe-Signature does not match the payload",
        }
    }
}

/// Checks one Stripe-Signature header value against the raw body at time `now`.
pub fn verify_stripe(secret: &[u8], header: Option<&str>, payload: &[u8], now: i64) -> Result<(), WebhookError> {
    let header = header.ok_or(WebhookError::MissingSignature)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => signatures.push(sig),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::MalformedSignature)?;
    if signatures.is_empty() {
        return Err(WebhookError::MalformedSignature);
    }
    if (now - timestamp).abs() > TOLERANCE_SECS {
        return Err(WebhookError::Expired);
    }
    let mac = |sig: &str| -> bool {
        let Ok(expected) = decode_hex(sig) else { return false };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(payload);
        // verify_slice compares in constant time.
        mac.verify_slice(&expected).is_ok()
    };
    if signatures.iter().any(|sig| mac(sig)) {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

fn decode_hex(text: &str) -> Result<Vec<u8>, ()> {
    if !text.len().is_multiple_of(2) {
        return Err(());
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2).ok_or(())?, 16).map_err(|_| ())).collect()
}

/// What Stripe sends: `t=<now>,v1=<hex hmac>` (used by tests and by `stagedoor` tooling).
pub fn sign_stripe(secret: &[u8], payload: &[u8], timestamp: i64) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(payload);
    let sig: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_secret";
    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_genuine_signature_passes_and_everything_else_is_refused() {
        let body = br#"{"type":  "charge.succeeded"}"#;
        let header = sign_stripe(SECRET, body, NOW);
        assert_eq!(verify_stripe(SECRET, Some(&header), body, NOW + 10), Ok(()));
        assert_eq!(verify_stripe(SECRET, Some(&header), b"{\"type\":\"charge.succeeded\"}", NOW), Err(WebhookError::BadSignature), "re-serialized body");
        assert_eq!(verify_stripe(b"other", Some(&header), body, NOW), Err(WebhookError::BadSignature));
        assert_eq!(verify_stripe(SECRET, Some(&header), body, NOW + 301), Err(WebhookError::Expired));
        assert_eq!(verify_stripe(SECRET, None, body, NOW), Err(WebhookError::MissingSignature));
        assert_eq!(verify_stripe(SECRET, Some("v1=abcd"), body, NOW), Err(WebhookError::MalformedSignature));
        assert_eq!(verify_stripe(SECRET, Some(&format!("t={NOW}")), body, NOW), Err(WebhookError::MalformedSignature));
        assert_eq!(verify_stripe(SECRET, Some(&format!("t={NOW},v1=zz")), body, NOW), Err(WebhookError::BadSignature));
        // Several v1 values (secret rotation): one matching is enough.
        let rotated = format!("{header},v1={}", "00".repeat(32));
        assert_eq!(verify_stripe(SECRET, Some(&rotated), body, NOW), Ok(()));
    }
}
