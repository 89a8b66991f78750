//! Verification keys: an HMAC secret or a public JWK, each with its algorithm allow-list.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::config::KeyConfig;

#[derive(Clone)]
pub struct VerifyingKey {
    pub kid: Option<String>,
    pub algorithms: Vec<Algorithm>,
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    // Never print key material, not even in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey").field("kid", &self.kid).field("algorithms", &self.algorithms).finish()
    }
}

pub fn compile_key(config: &KeyConfig) -> Result<VerifyingKey, String> {
    if config.algorithms.is_empty() {
        return Err("algorithms: list at least one".into());
    }
    let algorithms = config
        .algorithms
        .iter()
        .map(|a| super::algorithm(a).ok_or_else(|| format!("algorithms: {a:?} is not a supported JWS algorithm")))
        .collect::<Result<Vec<_>, _>>()?;
    let (key, family_ok): (DecodingKey, fn(Algorithm) -> bool) = match (&config.secret, &config.jwk) {
        (Some(secret), None) => {
            if secret.len() < 32 {
                return Err("secret: must be at least 32 bytes (256 bits)".into());
            }
            (DecodingKey::from_secret(secret.as_bytes()), |a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        }
        (None, Some(jwk)) => {
            let jwk: Jwk = serde_json::from_value(jwk.clone()).map_err(|e| format!("jwk: not a JWK: {e}"))?;
            let family: fn(Algorithm) -> bool = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => |a| {
                    matches!(
                        a,
                        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512
                    )
                },
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => |a| a == Algorithm::ES256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P384 => |a| a == Algorithm::ES384,
                AlgorithmParameters::OctetKey(_) => {
                    return Err("jwk: symmetric keys go in `secret`, never in a JWK".into());
                }
                _ => return Err("jwk: only RSA and EC P-256/P-384 public keys are supported".into()),
            };
            (DecodingKey::from_jwk(&jwk).map_err(|e| format!("jwk: unusable key: {e}"))?, family)
        }
        _ => return Err("give exactly one of `secret` or `jwk`".into()),
    };
    if let Some(bad) = algorithms.iter().find(|a| !family_ok(**a)) {
        // HS256 against an RSA key is the classic confusion attack: never allowed.
        return Err(format!("algorithms: {bad:?} cannot be used with this kind of key"));
    }
    Ok(VerifyingKey { kid: config.kid.clone(), algorithms, key })
}
