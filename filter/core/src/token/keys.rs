//! Verification keys: an HMAC secret or a public JWK, each with its algorithm allow-list,
//! and the one place a signature is decided.

use jsonwebtoken::{Algorithm, DecodingKey};

use super::key_error::KeyError;
pub use super::key_kind::KeyKind;
use super::public_jwk::compile_public_jwk;
use crate::config::KeyConfig;

#[derive(Clone)]
pub struct VerifyingKey {
    pub kid: Option<String>,
    /// The issuer whose tokens this key verifies; None: the verifier's own issuer.
    pub issuer: Option<String>,
    pub algorithms: Vec<Algorithm>,
    pub kind: KeyKind,
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    // Never print key material, not even in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("algorithms", &self.algorithms)
            .field("kind", &self.kind)
            .finish()
    }
}


/// A key's config as the compiler reads it. The secret is bytes here, so a caller that
/// holds raw key bytes (a test vector's `k`) compiles through the same rules.
#[derive(Debug, Clone, Copy)]
pub struct KeySource<'a> {
    pub kid: Option<&'a str>,
    pub algorithms: &'a [String],
    pub secret: Option<&'a [u8]>,
    pub jwk: Option<&'a serde_json::Value>,
    pub issuer: Option<&'a str>,
}

impl<'a> From<&'a KeyConfig> for KeySource<'a> {
    fn from(config: &'a KeyConfig) -> Self {
        let KeyConfig { kid, algorithms, secret, jwk, issuer } = config;
        Self {
            kid: kid.as_deref(),
            algorithms,
            secret: secret.as_ref().map(|s| s.as_bytes()),
            jwk: jwk.as_ref(),
            issuer: issuer.as_deref(),
        }
    }
}

pub fn compile_key(config: &KeyConfig) -> Result<VerifyingKey, KeyError> {
    compile_key_source(&KeySource::from(config))
}

pub fn compile_key_source(source: &KeySource<'_>) -> Result<VerifyingKey, KeyError> {
    if source.algorithms.is_empty() {
        return Err(KeyError::NoAlgorithms);
    }
    let algorithms = source
        .algorithms
        .iter()
        .map(|a| super::algorithm(a).ok_or_else(|| KeyError::UnsupportedAlgorithm(a.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    let (key, kind) = match (source.secret, source.jwk) {
        (Some(secret), None) => {
            check_secret_length(secret, &algorithms)?;
            (DecodingKey::from_secret(secret), KeyKind::Hmac)
        }
        (None, Some(jwk)) => compile_public_jwk(jwk, &algorithms)?,
        _ => return Err(KeyError::NotExactlyOneKey),
    };
    if let Some(bad) = algorithms.iter().find(|a| !kind.allows(**a)) {
        return Err(KeyError::WrongKeyKind(*bad));
    }
    for alg in &algorithms {
        probe(&key, *alg)?;
    }
    Ok(VerifyingKey { kid: source.kid.map(str::to_owned), issuer: source.issuer.map(str::to_owned), algorithms, kind, key })
}

/// RFC 7518 3.2: an HMAC key is at least as long as the hash output, so a secret that
/// verifies HS512 has 64 bytes or more.
fn check_secret_length(secret: &[u8], algorithms: &[Algorithm]) -> Result<(), KeyError> {
    for alg in algorithms {
        let min = match alg {
            Algorithm::HS256 => 32,
            Algorithm::HS384 => 48,
            Algorithm::HS512 => 64,
            _ => continue,
        };
        if secret.len() < min {
            return Err(KeyError::SecretTooShort { alg: *alg, min });
        }
    }
    Ok(())
}

/// Builds the verifier once with a dummy signature: the crypto backend parses the key
/// there (an EC point off its curve fails), and a bad signature alone only answers
/// `Ok(false)`. So a key the backend cannot use is refused at config time, not per token.
fn probe(key: &DecodingKey, alg: Algorithm) -> Result<(), KeyError> {
    super::crypto_backend::verify("AAAA", b"", key, alg).map(|_| ()).map_err(|e| KeyError::UnusableKey(e.to_string()))
}

impl VerifyingKey {
    /// The signature decision: `signature` (base64url, as in a compact JWS) signs
    /// `message` under `alg`, an algorithm this key allows. Every token goes through here.
    pub fn verifies(&self, alg: Algorithm, message: &[u8], signature: &str) -> bool {
        self.algorithms.contains(&alg) && matches!(super::crypto_backend::verify(signature, message, &self.key, alg), Ok(true))
    }
}
