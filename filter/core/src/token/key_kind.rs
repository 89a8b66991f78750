//! What a key is, apart from its bytes: the one fact the key compiler, the JWK reader and
//! their errors share.

use jsonwebtoken::Algorithm;

/// What a key is, which decides the algorithms it can ever verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Hmac,
    Rsa,
    EcP256,
    EcP384,
}

impl KeyKind {
    /// HS256 against an RSA key is the classic confusion attack: a kind allows its own
    /// family only.
    pub fn allows(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Self::Hmac => matches!(alg, HS256 | HS384 | HS512),
            Self::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Self::EcP256 => alg == ES256,
            Self::EcP384 => alg == ES384,
        }
    }

    pub fn is_hmac(self) -> bool {
        self == Self::Hmac
    }
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Hmac => "an HMAC secret",
            Self::Rsa => "an RSA key",
            Self::EcP256 => "an EC P-256 key",
            Self::EcP384 => "an EC P-384 key",
        })
    }
}
