//! A key set: each key compiled, and the rules that span keys (one kid each, one kind per
//! issuer).

use super::key_error::KeyError;
use super::keys::{compile_key_source, KeySource, VerifyingKey};

/// The key at fault in a key set, by index and kid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("keys[{index}]: {}: {error}", error.field())]
pub struct KeySetError {
    pub index: usize,
    pub kid: Option<String>,
    pub error: KeyError,
}

#[inline(never)] // configure-time (policy.rs `OUT_OF_LINE`)
pub fn compile_key_set<'a>(sources: impl IntoIterator<Item = KeySource<'a>>) -> Result<Vec<VerifyingKey>, KeySetError> {
    let mut keys: Vec<VerifyingKey> = Vec::new();
    for (index, source) in sources.into_iter().enumerate() {
        let at = |error| KeySetError { index, kid: source.kid.map(str::to_owned), error };
        // Two keys under one kid: which one a token means would depend on list order.
        if keys.iter().any(|k| k.kid.as_deref() == source.kid) {
            return Err(at(KeyError::DuplicateKid));
        }
        let key = compile_key_source(&source).map_err(at)?;
        // Per issuer: a key bound to another issuer never verifies this issuer's tokens,
        // so an IdP's public keys beside a development secret give no second way in.
        if let Some(first) = keys.iter().find(|k| k.issuer == key.issuer) {
            if first.kind.is_hmac() != key.kind.is_hmac() {
                return Err(at(KeyError::MixedKinds { first: first.kind, this: key.kind }));
            }
        }
        keys.push(key);
    }
    Ok(keys)
}
