//! Why a configured verification key was refused, with the field of the key at fault.

use jsonwebtoken::Algorithm;

use super::key_kind::KeyKind;

/// A key the compiler refuses. [`KeyError::field`] names the field of the key's config
/// (`jwk.use`, `secret`, ...); the message says why, and never echoes key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("list at least one")]
    NoAlgorithms,
    #[error("{0:?} is not a supported JWS algorithm")]
    UnsupportedAlgorithm(String),
    #[error("{0:?} cannot be used with this kind of key")]
    WrongKeyKind(Algorithm),
    #[error("give exactly one of `secret` or `jwk`")]
    NotExactlyOneKey,
    #[error("must be at least {min} bytes ({} bits) for {alg:?}, the size of its hash (RFC 7518 3.2)", min * 8)]
    SecretTooShort { alg: Algorithm, min: usize },
    #[error("not a JWK: {0}")]
    NotAJwk(String),
    #[error("symmetric keys go in `secret`, never in a JWK")]
    SymmetricJwk,
    #[error("{0:?}: only RSA and EC public keys are supported")]
    UnsupportedKeyType(String),
    #[error("{0:?}: only the EC curves P-256 and P-384 are supported")]
    UnsupportedCurve(String),
    /// `jwk.d`, `jwk.p`, ...: the gateway only verifies, so it must never hold a private key.
    #[error("is a private key member: give the public key only")]
    PrivateMember(&'static str),
    #[error("is {0:?}: only a key for signatures (\"sig\") may verify tokens")]
    NotForSignatures(String),
    #[error("{0}")]
    KeyOps(&'static str),
    #[error("is not base64url")]
    NotBase64Url(&'static str),
    #[error("{0:?} is not a supported JWS algorithm")]
    UnsupportedKeyAlgorithm(String),
    /// RFC 7517 4.4: a key that names its algorithm is used with that algorithm only.
    #[error("the key is for {key_alg:?} only, but `algorithms` lists {listed:?}")]
    NotTheKeysAlgorithm { key_alg: Algorithm, listed: Algorithm },
    #[error("an RSA modulus of {bits} bits: it must have 2048 to 4096 bits")]
    RsaModulusSize { bits: usize },
    #[error("is even, so it is not an RSA modulus")]
    RsaModulusEven,
    /// The key's private half can be computed from `n` alone: refuse it, do not warn.
    #[error("has the ROCA fingerprint (CVE-2017-15361): its private key can be recovered, replace the key")]
    RsaRoca,
    #[error("an RSA public exponent must be odd and between 3 and 2^33-1")]
    RsaExponent,
    #[error("unusable key: {0}")]
    UnusableKey(String),
    #[error("two keys with the same kid")]
    DuplicateKid,
    /// One key set holds one kind of key: with an HMAC secret beside public keys, the
    /// secret becomes a second way in that bypasses the issuer's private key.
    #[error("an HMAC secret and public keys cannot share a key set (this key is {this}, the first is {first})")]
    MixedKinds { first: KeyKind, this: KeyKind },
}

impl KeyError {
    /// The field of the key's config at fault, as `Policy::compile` reports it.
    pub fn field(&self) -> &'static str {
        match self {
            Self::NoAlgorithms | Self::UnsupportedAlgorithm(_) | Self::WrongKeyKind(_) => "algorithms",
            Self::NotExactlyOneKey => "key",
            Self::SecretTooShort { .. } => "secret",
            Self::NotAJwk(_) | Self::UnusableKey(_) => "jwk",
            Self::SymmetricJwk | Self::UnsupportedKeyType(_) => "jwk.kty",
            Self::UnsupportedCurve(_) => "jwk.crv",
            Self::PrivateMember(field) => field,
            Self::NotForSignatures(_) => "jwk.use",
            Self::KeyOps(_) => "jwk.key_ops",
            Self::NotBase64Url(field) => field,
            Self::UnsupportedKeyAlgorithm(_) | Self::NotTheKeysAlgorithm { .. } => "jwk.alg",
            Self::RsaModulusSize { .. } | Self::RsaModulusEven | Self::RsaRoca => "jwk.n",
            Self::RsaExponent => "jwk.e",
            Self::DuplicateKid => "kid",
            Self::MixedKinds { this: KeyKind::Hmac, .. } => "secret",
            Self::MixedKinds { .. } => "jwk",
        }
    }
}
