//! Bearer tokens: take the one token from the Authorization header, verify its signature
//! with the key its `kid` names under an algorithm that key allows, then check its claims.

mod claims;
pub mod crypto_backend;
mod error;
mod key_error;
mod key_kind;
mod key_set;
mod keys;
mod public_jwk;
#[cfg(feature = "asymmetric")] // only a public JWK is checked as RSA (public_jwk.rs)
mod rsa_key;

pub use claims::VerifiedToken;
pub use error::TokenError;
pub use key_error::KeyError;
pub use key_set::{compile_key_set, KeySetError};
pub use keys::{compile_key, compile_key_source, KeyKind, KeySource, VerifyingKey};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The checks every token must pass, compiled from [`crate::config::AuthConfig`].
#[derive(Debug, Clone)]
pub struct Verifier {
    pub issuer: String,
    pub audience: String,
    pub leeway_secs: i64,
    pub keys: Vec<VerifyingKey>,
    /// Issuers whose keys come from a JWKS (a key's `issuer`): a token of one of them with
    /// no key at all is refused as [`TokenError::KeysUnavailable`].
    pub jwks_issuers: Vec<String>,
}

/// The one bearer token of a request, from every Authorization value it carried.
pub fn bearer_token<'a>(authorization: &[&'a str]) -> Result<&'a str, TokenError> {
    let token = bearer_candidate(authorization)?;
    check_token_chars(token)?;
    Ok(token)
}

/// The token part of the one `Bearer` Authorization value, checked for count, scheme and
/// size but not yet for its characters: an exact match in the cache of verified tokens
/// needs no further check (only tokens that passed every check are ever cached).
pub fn bearer_candidate<'a>(authorization: &[&'a str]) -> Result<&'a str, TokenError> {
    let value = match authorization {
        [] => return Err(TokenError::Missing),
        [one] => *one,
        _ => return Err(TokenError::Malformed("more than one Authorization header")),
    };
    let space = value.bytes().position(|b| b == b' ').ok_or(TokenError::Malformed("Authorization is not 'Bearer <token>'"))?;
    let (scheme, token) = (&value[..space], &value[space + 1..]);
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Malformed("Authorization is not 'Bearer <token>'"));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    Ok(token)
}

/// Only base64url and the two dots: this refuses a second token, commas, spaces and
/// anything else that could smuggle a second credential.
pub fn check_token_chars(token: &str) -> Result<(), TokenError> {
    if token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.') {
        Ok(())
    } else {
        Err(TokenError::Malformed("the token has characters a JWT cannot have"))
    }
}

#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    /// Critical extensions we do not understand make a token invalid (RFC 7515 4.1.11).
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// The parts of a compact JWS, borrowed from the token.
struct Parts<'a> {
    signing_input: &'a str,
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, TokenError> {
    let mut it = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(TokenError::Malformed("a JWT has exactly three parts"));
    };
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err(TokenError::Malformed("a JWT part is empty"));
    }
    Ok(Parts { signing_input: &token[..header.len() + 1 + payload.len()], header, payload, signature })
}

fn decode_json<T: for<'de> Deserialize<'de>>(part: &str, what: &'static str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed(what))?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed(what))
}

/// The exact algorithm names JWS defines that we support; anything else ("none", "None",
/// "hs256", "HS256 ") is not an algorithm at all.
fn algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

impl Verifier {
    /// Verifies the signature, then every claim, at time `now` (unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<VerifiedToken, TokenError> {
        let (payload, key) = self.verify_signature_by_key(token)?;
        // Only now, with the signature good, do the claims mean anything. A key from an
        // issuer's JWKS vouches for that issuer only.
        let claims = parse_claims(&payload)?;
        let issuer = key.issuer.as_deref().unwrap_or(&self.issuer);
        let verified = claims.check(self, issuer, token, now)?;
        verified.check_time(now, self.leeway_secs)?;
        Ok(verified)
    }

    /// The signature layer of [`Self::verify`]: the compact JWS is well formed, its key and
    /// algorithm are allowed and its signature is good. Returns the decoded payload,
    /// whatever it holds; claims are the caller's business.
    pub fn verify_signature(&self, token: &str) -> Result<Vec<u8>, TokenError> {
        self.verify_signature_by_key(token).map(|(payload, _)| payload)
    }

    /// [`Self::verify_signature`], with the key that verified it.
    #[inline(never)] // a cold token or a refusal, not a cached one (policy.rs `OUT_OF_LINE`)
    fn verify_signature_by_key(&self, token: &str) -> Result<(Vec<u8>, &VerifyingKey), TokenError> {
        let parts = split(token)?;
        let header: JoseHeader = decode_json(parts.header, "the JWT header is not base64url JSON")?;
        if header.crit.is_some() {
            return Err(TokenError::Malformed("the JWT header has critical extensions"));
        }
        let Some(key) = self.keys.iter().find(|k| k.kid == header.kid) else {
            return Err(self.no_key_error(parts.payload));
        };
        let alg = algorithm(&header.alg).ok_or(TokenError::AlgorithmNotAllowed)?;
        if !key.algorithms.contains(&alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        if !key.verifies(alg, parts.signing_input.as_bytes(), parts.signature) {
            return Err(TokenError::InvalidSignature);
        }
        let payload =
            URL_SAFE_NO_PAD.decode(parts.payload).map_err(|_| TokenError::Malformed("the JWT claims are not base64url JSON"))?;
        Ok((payload, key))
    }

    /// No key has the token's kid. If the token claims a JWKS issuer none of whose keys
    /// has arrived yet, say so: its keys are missing, not its kid. The claim is unverified
    /// and picks only the refusal's wording; the token is refused either way.
    fn no_key_error(&self, payload: &str) -> TokenError {
        match unverified_issuer(payload) {
            Some(iss) if self.is_jwks_issuer(&iss) && !self.keys.iter().any(|k| k.issuer.as_deref() == Some(iss.as_str())) => {
                TokenError::KeysUnavailable
            }
            _ => TokenError::UnknownKey,
        }
    }

    fn is_jwks_issuer(&self, issuer: &str) -> bool {
        self.jwks_issuers.iter().any(|i| i == issuer)
    }

    /// The (issuer, kid) to report for a token no key verifies: only a token that claims a
    /// JWKS issuer and names a kid, which that issuer's JWKS may have gained since the last
    /// fetch. Unverified, so the control plane treats it as a hint, never as a key.
    pub fn unknown_key_of(&self, token: &str) -> Option<(String, String)> {
        let parts = split(token).ok()?;
        let header: JoseHeader = decode_json(parts.header, "").ok()?;
        let kid = header.kid?;
        let issuer = unverified_issuer(parts.payload)?;
        self.is_jwks_issuer(&issuer).then_some((issuer, kid))
    }
}

#[derive(Deserialize)]
struct IssuerOnly {
    #[serde(default)]
    iss: Option<serde_json::Value>,
}

/// The claims of a token whose signature is good. Out of line: serde's visitor for them is
/// large, and inlined into `Verifier::verify` it made a 22 KB function (policy.rs
/// `OUT_OF_LINE`).
#[inline(never)]
fn parse_claims(payload: &[u8]) -> Result<claims::RawClaims, TokenError> {
    serde_json::from_slice(payload).map_err(|_| TokenError::Malformed("the JWT claims are not base64url JSON"))
}

fn unverified_issuer(payload: &str) -> Option<String> {
    let claims: IssuerOnly = decode_json(payload, "").ok()?;
    match claims.iss {
        Some(serde_json::Value::String(iss)) => Some(iss),
        _ => None,
    }
}

/// The revocation key of a token: its `jti`, else the SHA-256 of the whole token.
pub fn revocation_key(jti: Option<&str>, token: &str) -> String {
    match jti {
        Some(jti) if !jti.is_empty() => jti.to_owned(),
        _ => hex_sha256(token.as_bytes()),
    }
}

pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod key_tests;

#[cfg(test)]
mod issuer_tests;
