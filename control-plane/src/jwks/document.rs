//! A fetched JWKS document -> the keys the filter gets, each judged by the filter's own key
//! compiler (`stagedoor_filter_core::token`), so a key the filter would refuse never leaves
//! the control plane.
//!
//! One bad key does not cost the issuer its others: providers publish encryption keys and
//! keys for algorithms we do not allow beside their signing keys (Keycloak's RSA-OAEP key),
//! so such a key is skipped and named in /status. A document that is not a JWKS, or leaves
//! no key at all, is an error, and the last good key set stays.

use std::collections::BTreeSet;

use serde_json::Value;
use stagedoor_filter_core::config::KeyConfig;
use stagedoor_filter_core::token::{compile_key, compile_key_set, KeySource};

use crate::registry::jwks_source::JwksSource;

/// A JWKS larger than this is refused unread (real ones are a few KiB).
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// More keys than this is no provider's key set.
pub const MAX_KEYS: usize = 64;
const MAX_KID_BYTES: usize = stagedoor_filter_core::key_reports::MAX_KID_BYTES;

/// The keys a document yields for the filter, and each key it skipped with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledKeySet {
    pub keys: Vec<KeyConfig>,
    pub skipped: Vec<String>,
}

impl CompiledKeySet {
    pub fn kids(&self) -> BTreeSet<String> {
        self.keys.iter().filter_map(|k| k.kid.clone()).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not a JWKS: no `keys` list")]
    NoKeyList,
    #[error("{0} keys: at most {MAX_KEYS}")]
    TooManyKeys(usize),
    #[error("no usable key ({})", .0.join("; "))]
    NoUsableKey(Vec<String>),
    #[error("the key set is refused: {0}")]
    Refused(String),
}

pub fn compile_document(bytes: &[u8], source: &JwksSource) -> Result<CompiledKeySet, DocumentError> {
    let document: Value = serde_json::from_slice(bytes).map_err(|e| DocumentError::NotJson(e.to_string()))?;
    let jwks = document.get("keys").and_then(Value::as_array).ok_or(DocumentError::NoKeyList)?;
    if jwks.len() > MAX_KEYS {
        return Err(DocumentError::TooManyKeys(jwks.len()));
    }
    let mut keys: Vec<KeyConfig> = Vec::new();
    let mut skipped = Vec::new();
    for (index, jwk) in jwks.iter().enumerate() {
        match compile_jwk(jwk, source, &keys) {
            Ok(key) => keys.push(key),
            Err(why) => skipped.push(format!("keys[{index}]{}: {why}", kid_label(jwk))),
        }
    }
    if keys.is_empty() {
        return Err(DocumentError::NoUsableKey(skipped));
    }
    // The set-wide rules, as the filter will run them on what is pushed.
    compile_key_set(keys.iter().map(KeySource::from)).map_err(|e| DocumentError::Refused(e.to_string()))?;
    Ok(CompiledKeySet { keys, skipped })
}

fn kid_label(jwk: &Value) -> String {
    match jwk.get("kid").and_then(Value::as_str) {
        Some(kid) if kid.len() <= MAX_KID_BYTES => format!(" (kid {kid:?})"),
        _ => String::new(),
    }
}

/// One JWK as a filter key bound to the source's issuer, with the allowed algorithms it
/// can verify: its own `alg` if it names one (RFC 7517 4.4), else those of its kind.
fn compile_jwk(jwk: &Value, source: &JwksSource, accepted: &[KeyConfig]) -> Result<KeyConfig, String> {
    let kid = match jwk.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() && kid.len() <= MAX_KID_BYTES => kid.clone(),
        Some(Value::String(_)) => return Err(format!("kid: must be 1 to {MAX_KID_BYTES} bytes")),
        _ => return Err(String::from("kid: a JWKS key needs one (tokens name their key by it)")),
    };
    if accepted.iter().any(|k| k.kid.as_deref() == Some(kid.as_str())) {
        return Err(String::from("kid: a second key with this kid"));
    }
    let candidates: Vec<String> = match jwk.get("alg").and_then(Value::as_str) {
        Some(alg) if source.algorithms.iter().any(|a| a == alg) => vec![alg.to_owned()],
        Some(alg) => return Err(format!("jwk.alg: {alg:?} is not in the issuer's algorithms {:?}", source.algorithms)),
        None => source.algorithms.clone(),
    };
    let key = |algorithms: Vec<String>| KeyConfig {
        kid: Some(kid.clone()),
        algorithms,
        secret: None,
        jwk: Some(jwk.clone()),
        issuer: Some(source.issuer.clone()),
    };
    // The allowed algorithms this kind of key can verify (an EC key none of RS256's).
    let mut first_error = None;
    let mut usable = Vec::new();
    for alg in candidates {
        match compile_key(&key(vec![alg.clone()])) {
            Ok(_) => usable.push(alg),
            Err(e) => {
                first_error.get_or_insert_with(|| format!("{}: {e}", e.field()));
            }
        }
    }
    if usable.is_empty() {
        return Err(first_error.unwrap_or_else(|| String::from("no allowed algorithm")));
    }
    let key = key(usable);
    compile_key(&key).map_err(|e| format!("{}: {e}", e.field()))?;
    Ok(key)
}

#[cfg(test)]
#[path = "document_tests.rs"]
mod tests;
