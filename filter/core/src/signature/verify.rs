//! One signed request: its head checked when it arrives, its MAC once the body is here.
//!
//! The canonical string (the README documents it) is, byte for byte:
//!
//! ```text
//! <x-timestamp as sent> "." <method> <:path as received, query included> "." <raw body>
//! ```
//!
//! e.g. `1764600000.POST/api/v1/payments/refund?dry=1.{"id":"p1"}`; a key marked
//! `legacy_body_only` signs the original gateway's `<x-timestamp> "." <raw body>`.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::compile::SignaturePolicy;
use super::{KEY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::reply::Denial;

/// Why a signed request is refused: a 401 in the gateway's JSON shape, or the 503 of a
/// replay store that cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// `x-signature`, `x-timestamp` or `x-signature-key-id` is absent.
    Missing,
    /// No key has that id.
    UnknownKey,
    /// `x-timestamp` is further than the tolerance from now, either way.
    Expired,
    /// `x-timestamp` is not a unix time.
    BadTimestamp,
    /// The MAC does not match (or is not hex or base64 of 32 bytes, or a header is repeated).
    Invalid,
    /// The signature was already used within its window, on this Envoy or another.
    Replayed,
    /// The replay store did not answer: the gateway cannot tell a replay (fail closed).
    ReplayUnavailable,
}

impl SignatureError {
    /// Every variant, for metrics (a test checks that it agrees with `code`).
    pub const ALL: [SignatureError; 7] = [
        Self::Missing,
        Self::UnknownKey,
        Self::Expired,
        Self::BadTimestamp,
        Self::Invalid,
        Self::Replayed,
        Self::ReplayUnavailable,
    ];

    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "SIGNATURE_MISSING",
            Self::UnknownKey => "SIGNATURE_UNKNOWN_KEY",
            Self::Expired => "SIGNATURE_EXPIRED",
            Self::BadTimestamp => "SIGNATURE_TIMESTAMP",
            Self::Invalid => "SIGNATURE_INVALID",
            Self::Replayed => "SIGNATURE_REPLAYED",
            Self::ReplayUnavailable => "SIGNATURE_REPLAY_UNAVAILABLE",
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            Self::Missing => "This route requires x-signature, x-timestamp and x-signature-key-id",
            Self::UnknownKey => "x-signature-key-id names no known key",
            Self::Expired => "x-timestamp is outside the allowed window",
            Self::BadTimestamp => "x-timestamp must be a unix time in seconds (or milliseconds)",
            Self::Invalid => "x-signature does not match the request",
            Self::Replayed => "This signature was already used",
            Self::ReplayUnavailable => "The gateway cannot check signatures for replay right now; try again shortly",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::ReplayUnavailable => 503,
            _ => 401,
        }
    }

    pub fn denial(&self) -> Denial {
        Denial { status: self.status(), code: self.code(), message: self.message().to_owned() }
    }

    pub fn index(&self) -> usize {
        Self::ALL.iter().position(|e| e == self).unwrap_or(0)
    }
}

/// The parts of the canonical string in order; the MAC is fed these, and
/// [`canonical_string`] joins them, so the two cannot drift apart.
fn canonical_parts<'a>(timestamp: &'a str, method: &'a str, target: &'a str, body: &'a [u8], legacy: bool) -> Vec<&'a [u8]> {
    if legacy {
        vec![timestamp.as_bytes(), b".", body]
    } else {
        vec![timestamp.as_bytes(), b".", method.as_bytes(), target.as_bytes(), b".", body]
    }
}

/// The exact bytes a caller signs (see the module's documentation).
pub fn canonical_string(timestamp: &str, method: &str, target: &str, body: &[u8], legacy: bool) -> Vec<u8> {
    canonical_parts(timestamp, method, target, body, legacy).concat()
}

fn mac(secret: &[u8], parts: &[&[u8]]) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    for part in parts {
        mac.update(part);
    }
    Some(mac)
}

/// What a caller sends in `x-signature` (lower-case hex; tests and tooling).
pub fn sign(secret: &[u8], timestamp: &str, method: &str, target: &str, body: &[u8], legacy: bool) -> String {
    let Some(mac) = mac(secret, &canonical_parts(timestamp, method, target, body, legacy)) else { return String::new() };
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// `x-signature` as the 32 bytes of the MAC: 64 hex digits (either case), or base64
/// (standard with padding, or URL-safe without).
pub fn decode_signature(text: &str) -> Option<[u8; 32]> {
    let bytes = if text.len() == 64 {
        (0..64).step_by(2).map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect::<Option<Vec<u8>>>()?
    } else {
        STANDARD.decode(text).or_else(|_| URL_SAFE_NO_PAD.decode(text)).ok()?
    };
    bytes.try_into().ok()
}

/// Unix seconds from `x-timestamp`: decimal digits; 13 digits or more read as milliseconds
/// (the original gateway's callers send `Date.now()`).
fn timestamp_secs(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 16 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: i64 = text.parse().ok()?;
    Some(if value >= 1_000_000_000_000 { value / 1000 } else { value })
}

/// A signed request whose head passed, waiting for its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSignature {
    key_id: String,
    secret: Vec<u8>,
    legacy: bool,
    timestamp: String,
    method: String,
    target: String,
    signature: [u8; 32],
}

/// A signature that matched, and the digest its one use is recorded under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub key_id: String,
    /// Hex SHA-256 of the key id and the MAC: the replay store's key, never the MAC itself.
    pub replay_digest: String,
}

/// The one value of `name`; `Err` when it is repeated (which copy would be signed?).
fn single<'a>(headers: &[(&str, &'a str)], name: &str) -> Result<Option<&'a str>, SignatureError> {
    let mut values = headers.iter().filter(|(n, _)| *n == name).map(|(_, v)| *v);
    let first = values.next();
    if values.next().is_some() {
        return Err(SignatureError::Invalid);
    }
    Ok(first)
}

/// The checks the head allows, in the order a caller fixes them: all three headers there,
/// the key known, the timestamp within the window, the signature readable.
pub fn check_signed_head(
    policy: &SignaturePolicy,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    now: i64,
) -> Result<PendingSignature, SignatureError> {
    let key_id = single(headers, KEY_ID_HEADER)?;
    let timestamp = single(headers, TIMESTAMP_HEADER)?;
    let signature = single(headers, SIGNATURE_HEADER)?;
    let (Some(key_id), Some(timestamp), Some(signature)) = (key_id, timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let key = policy.key(key_id).ok_or(SignatureError::UnknownKey)?;
    let signed_at = timestamp_secs(timestamp).ok_or(SignatureError::BadTimestamp)?;
    if (now - signed_at).abs() > policy.tolerance_secs {
        return Err(SignatureError::Expired);
    }
    let signature = decode_signature(signature.trim()).ok_or(SignatureError::Invalid)?;
    Ok(PendingSignature {
        key_id: key.id.clone(),
        secret: key.secret.clone(),
        legacy: key.legacy_body_only,
        timestamp: timestamp.to_owned(),
        method: method.to_owned(),
        target: target.to_owned(),
        signature,
    })
}

impl PendingSignature {
    /// The MAC over the canonical string with `body`, compared in constant time.
    pub fn verify(&self, body: &[u8]) -> Result<Verified, SignatureError> {
        let parts = canonical_parts(&self.timestamp, &self.method, &self.target, body, self.legacy);
        let mac = mac(&self.secret, &parts).ok_or(SignatureError::Invalid)?;
        // verify_slice compares in constant time.
        mac.verify_slice(&self.signature).map_err(|_| SignatureError::Invalid)?;
        Ok(Verified { key_id: self.key_id.clone(), replay_digest: replay_digest(&self.key_id, &self.signature) })
    }
}

fn replay_digest(key_id: &str, signature: &[u8; 32]) -> String {
    let mut hash = Sha256::new();
    hash.update(b"stagedoor-signature-replay\0");
    hash.update(key_id.as_bytes());
    hash.update(b"\0");
    hash.update(signature);
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
