//! The crypto that checks token signatures: every verification goes through [`verify`].
//!
//! Built with the `asymmetric` feature (the default), jsonwebtoken's RustCrypto backend:
//! HMAC, RSA, ECDSA P-256/P-384 and Ed25519. Without it, [`HMAC_ONLY`]: HS256, HS384 and
//! HS512 and nothing else, for a filter module that serves a registry whose keys are all
//! shared secrets. Why: the RSA and elliptic-curve verifiers are code every VM compiles
//! and keeps, and Envoy runs three VMs per filter (issue 18, RSS). Such a module refuses
//! any other key when the policy is compiled ([`super::keys`]' probe): the control plane
//! pushes it only for HMAC-only registries, and Envoy refuses a policy it cannot serve
//! rather than answering 401 to every token of that key.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use sha2::{Sha256, Sha384, Sha512};

/// Whether `signature` (base64url) signs `message` under `alg` with `key`; an error when
/// the backend cannot use the key for `alg` at all.
pub fn verify(signature: &str, message: &[u8], key: &DecodingKey, alg: Algorithm) -> Result<bool> {
    #[cfg(feature = "asymmetric")]
    {
        jsonwebtoken::crypto::verify(signature, message, key, alg)
    }
    // Called directly, not installed as jsonwebtoken's process-wide default: no global
    // state, and nothing done per verification but the check itself.
    #[cfg(not(feature = "asymmetric"))]
    {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let verifier = (HMAC_ONLY.verifier_factory)(&alg, key)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| ErrorKind::InvalidSignature)?;
        Ok(verifier.verify(message, &signature).is_ok())
    }
}

/// The HMAC-only backend (see the module's doc). It signs nothing: the filter only verifies.
pub static HMAC_ONLY: CryptoProvider =
    CryptoProvider { signer_factory: no_signer, verifier_factory: hmac_verifier, jwk_utils: JwkUtils::new_unimplemented() };

fn no_signer(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    Err(ErrorKind::Provider(String::from("this filter module only verifies")).into())
}

fn hmac_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            Ok(Box::new(HmacVerifier { alg: *alg, secret: key.try_get_hmac_secret()?.to_vec() }))
        }
        other => Err(ErrorKind::Provider(format!("{other:?} needs the filter module built with asymmetric algorithms")).into()),
    }
}

struct HmacVerifier {
    alg: Algorithm,
    secret: Vec<u8>,
}

impl signature::Verifier<Vec<u8>> for HmacVerifier {
    fn verify(&self, message: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let matches = match self.alg {
            Algorithm::HS256 => mac_matches::<Hmac<Sha256>>(&self.secret, message, signature),
            Algorithm::HS384 => mac_matches::<Hmac<Sha384>>(&self.secret, message, signature),
            Algorithm::HS512 => mac_matches::<Hmac<Sha512>>(&self.secret, message, signature),
            _ => false,
        };
        if matches { Ok(()) } else { Err(signature::Error::new()) }
    }
}

impl JwtVerifier for HmacVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// Constant-time comparison (`verify_slice`), as RustCrypto's backend does.
fn mac_matches<M: Mac + KeyInit>(secret: &[u8], message: &[u8], signature: &[u8]) -> bool {
    match <M as KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(message);
            mac.verify_slice(signature).is_ok()
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    use super::*;

    const SECRET: &[u8] = b"a-secret-of-at-least-thirty-two-bytes-long";

    /// What the default backend answers, for comparison.
    fn rust_crypto(signature: &str, message: &[u8], key: &DecodingKey, alg: Algorithm) -> Result<bool> {
        let verifier = (jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.verifier_factory)(&alg, key)?;
        Ok(verifier.verify(message, &URL_SAFE_NO_PAD.decode(signature).unwrap_or_default()).is_ok())
    }

    fn hmac_only(signature: &str, message: &[u8], key: &DecodingKey, alg: Algorithm) -> Result<bool> {
        let verifier = (HMAC_ONLY.verifier_factory)(&alg, key)?;
        Ok(verifier.verify(message, &URL_SAFE_NO_PAD.decode(signature).unwrap_or_default()).is_ok())
    }

    #[test]
    fn hmac_only_answers_as_rust_crypto_for_every_hmac_algorithm() {
        let key = DecodingKey::from_secret(SECRET);
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let encoding = EncodingKey::from_secret(SECRET);
            let good = jsonwebtoken::crypto::sign(b"header.payload", &encoding, alg).unwrap();
            let other = jsonwebtoken::crypto::sign(b"header.payload", &EncodingKey::from_secret(b"another-secret"), alg).unwrap();
            for (signature, message) in [(good.as_str(), &b"header.payload"[..]), (good.as_str(), b"header.payloaD"), (other.as_str(), b"header.payload"), ("", b"header.payload")] {
                assert_eq!(hmac_only(signature, message, &key, alg).unwrap(), rust_crypto(signature, message, &key, alg).unwrap(), "{alg:?} {signature}");
            }
            assert!(hmac_only(&good, b"header.payload", &key, alg).unwrap());
        }
    }

    #[test]
    fn hmac_only_refuses_every_other_algorithm_and_key() {
        let secret = DecodingKey::from_secret(SECRET);
        for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA, Algorithm::PS256] {
            let error = hmac_only("AAAA", b"", &secret, alg).unwrap_err().to_string();
            assert!(error.contains("asymmetric"), "{alg:?}: {error}");
        }
        let rsa = DecodingKey::from_rsa_components("AQAB", "AQAB").unwrap();
        assert!(hmac_only("AAAA", b"", &rsa, Algorithm::HS256).is_err(), "an RSA key is no HMAC secret");
        assert!((HMAC_ONLY.signer_factory)(&Algorithm::HS256, &EncodingKey::from_secret(SECRET)).is_err());
    }
}
