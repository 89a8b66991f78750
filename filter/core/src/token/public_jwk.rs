//! The rules a JWK passes to become a verification key: a public key, for signatures, of
//! a kind and size we support, used with its own algorithm only. Each rule reads the raw
//! JSON first, so a refusal names the member at fault.

#[cfg(feature = "asymmetric")]
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use super::key_error::KeyError;
use super::key_kind::KeyKind;
#[cfg(feature = "asymmetric")]
use super::rsa_key::check_rsa;

/// The private members a JWK can carry (RFC 7518 6.2.2, 6.3.2), with their field names.
const PRIVATE_MEMBERS: [(&str, &str); 7] =
    [("d", "jwk.d"), ("p", "jwk.p"), ("q", "jwk.q"), ("dp", "jwk.dp"), ("dq", "jwk.dq"), ("qi", "jwk.qi"), ("oth", "jwk.oth")];

pub(super) fn compile_public_jwk(jwk: &Value, algorithms: &[Algorithm]) -> Result<(DecodingKey, KeyKind), KeyError> {
    let members = jwk.as_object().ok_or_else(|| KeyError::NotAJwk("not a JSON object".into()))?;
    if members.get("kty").and_then(Value::as_str) == Some("oct") {
        return Err(KeyError::SymmetricJwk);
    }
    if let Some((_, field)) = PRIVATE_MEMBERS.iter().find(|(member, _)| members.contains_key(*member)) {
        return Err(KeyError::PrivateMember(field));
    }
    check_use(members)?;
    check_key_ops(members)?;
    check_own_algorithm(members, algorithms)?;
    decoding_key(jwk)
}

/// The JWK as a key of a kind we verify. Without the `asymmetric` feature no public key
/// verifies (token/crypto_backend.rs), so that build refuses it here, after the checks
/// that name a member, and carries no JWK parser: jsonwebtoken's `Jwk` deserializer was
/// the HMAC-only module's third-largest function (policy.rs `OUT_OF_LINE`).
#[cfg(not(feature = "asymmetric"))]
fn decoding_key(_jwk: &Value) -> Result<(DecodingKey, KeyKind), KeyError> {
    Err(KeyError::UnusableKey(String::from("a public key needs the filter module built with asymmetric algorithms")))
}

#[cfg(feature = "asymmetric")]
fn decoding_key(jwk: &Value) -> Result<(DecodingKey, KeyKind), KeyError> {
    let parsed: Jwk = serde_json::from_value(jwk.clone()).map_err(|e| KeyError::NotAJwk(e.to_string()))?;
    let kind = match &parsed.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            check_rsa(&rsa.n, &rsa.e)?;
            KeyKind::Rsa
        }
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => KeyKind::EcP256,
            EllipticCurve::P384 => KeyKind::EcP384,
            ref other => return Err(KeyError::UnsupportedCurve(format!("{other:?}"))),
        },
        AlgorithmParameters::OctetKey(_) => return Err(KeyError::SymmetricJwk),
        AlgorithmParameters::OctetKeyPair(_) => return Err(KeyError::UnsupportedKeyType("OKP".into())),
    };
    let key = DecodingKey::from_jwk(&parsed).map_err(|e| KeyError::UnusableKey(e.to_string()))?;
    Ok((key, kind))
}

/// RFC 7517 4.2: `use` says what the key is for; a key for encryption never verifies.
fn check_use(members: &Map<String, Value>) -> Result<(), KeyError> {
    match members.get("use") {
        None => Ok(()),
        Some(Value::String(s)) if s == "sig" => Ok(()),
        Some(Value::String(s)) => Err(KeyError::NotForSignatures(s.clone())),
        Some(other) => Err(KeyError::NotForSignatures(other.to_string())),
    }
}

/// RFC 7517 4.3: `key_ops` lists what the key may do; it must allow `verify`, and a key
/// also listed for encryption or wrapping is not a signature key.
fn check_key_ops(members: &Map<String, Value>) -> Result<(), KeyError> {
    let Some(ops) = members.get("key_ops") else { return Ok(()) };
    let ops = ops.as_array().ok_or(KeyError::KeyOps("must be a list of operations"))?;
    let mut verify = false;
    for op in ops {
        match op.as_str() {
            Some("verify") => verify = true,
            Some("sign") => {}
            _ => return Err(KeyError::KeyOps("lists an operation other than \"sign\" and \"verify\"")),
        }
    }
    if verify {
        Ok(())
    } else {
        Err(KeyError::KeyOps("does not include \"verify\""))
    }
}

/// RFC 7517 4.4: a key that names its `alg` is used with that algorithm only, whatever the
/// allow-list says.
fn check_own_algorithm(members: &Map<String, Value>, algorithms: &[Algorithm]) -> Result<(), KeyError> {
    let Some(alg) = members.get("alg") else { return Ok(()) };
    let name = alg.as_str().ok_or_else(|| KeyError::UnsupportedKeyAlgorithm(alg.to_string()))?;
    let key_alg = super::algorithm(name).ok_or_else(|| KeyError::UnsupportedKeyAlgorithm(name.to_owned()))?;
    match algorithms.iter().find(|a| **a != key_alg) {
        Some(listed) => Err(KeyError::NotTheKeysAlgorithm { key_alg, listed: *listed }),
        None => Ok(()),
    }
}
