//! The key rules, one test per rule, each checking the field the refusal names.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use super::*;
use crate::config::KeyConfig;

fn jwks() -> Value {
    serde_json::from_str(include_str!("../../testdata/jwks.json")).unwrap()
}

fn rsa_jwk() -> Value {
    jwks()["keys"][0].clone()
}

fn ec_jwk() -> Value {
    jwks()["keys"][1].clone()
}

fn with(mut jwk: Value, member: &str, value: Value) -> Value {
    jwk[member] = value;
    jwk
}

fn jwk_key(algorithms: &[&str], jwk: Value) -> KeyConfig {
    KeyConfig { kid: None, algorithms: algorithms.iter().map(|a| a.to_string()).collect(), secret: None, jwk: Some(jwk), issuer: None }
}

fn secret_key(algorithms: &[&str], len: usize) -> KeyConfig {
    KeyConfig { kid: None, algorithms: algorithms.iter().map(|a| a.to_string()).collect(), secret: Some("s".repeat(len)), jwk: None, issuer: None }
}

/// The field a refused key names, and the error itself.
fn refusal(key: &KeyConfig) -> (&'static str, KeyError) {
    let e = compile_key(key).unwrap_err();
    (e.field(), e)
}

/// An RSA modulus of `bits` bits, odd, with the top bit set: enough for the size rule.
fn modulus(bits: usize) -> String {
    let mut n = vec![0u8; bits / 8];
    n[0] = 0x80;
    n[bits / 8 - 1] = 1;
    URL_SAFE_NO_PAD.encode(n)
}

#[test]
fn the_shipped_test_keys_compile() {
    assert!(compile_key(&jwk_key(&["RS256"], rsa_jwk())).is_ok());
    assert!(compile_key(&jwk_key(&["ES256"], ec_jwk())).is_ok());
    assert!(compile_key(&secret_key(&["HS256"], 32)).is_ok());
}

#[test]
fn a_jwk_for_encryption_never_verifies() {
    for jwk in [rsa_jwk(), ec_jwk()] {
        let alg = jwk["alg"].as_str().unwrap().to_owned();
        let (field, e) = refusal(&jwk_key(&[&alg], with(jwk, "use", json!("enc"))));
        assert_eq!((field, e.to_string().as_str()), ("jwk.use", "is \"enc\": only a key for signatures (\"sig\") may verify tokens"));
    }
}

#[test]
fn key_ops_must_allow_verify_and_nothing_but_signatures() {
    let key = |ops: Value| jwk_key(&["RS256"], with(rsa_jwk(), "key_ops", ops));
    assert_eq!(refusal(&key(json!(["encrypt"]))).0, "jwk.key_ops");
    assert_eq!(refusal(&key(json!(["sign"]))).0, "jwk.key_ops");
    assert_eq!(refusal(&key(json!(["verify", "decrypt"]))).0, "jwk.key_ops");
    assert_eq!(refusal(&key(json!("verify"))).0, "jwk.key_ops");
    assert!(compile_key(&key(json!(["verify"]))).is_ok());
    assert!(compile_key(&key(json!(["sign", "verify"]))).is_ok());
}

#[test]
fn a_jwk_with_its_own_alg_verifies_that_algorithm_only() {
    let ps512 = with(rsa_jwk(), "alg", json!("PS512"));
    let (field, e) = refusal(&jwk_key(&["RS256"], ps512.clone()));
    assert_eq!(field, "jwk.alg");
    assert_eq!(e, KeyError::NotTheKeysAlgorithm { key_alg: Algorithm::PS512, listed: Algorithm::RS256 });
    assert_eq!(refusal(&jwk_key(&["PS512", "RS256"], ps512.clone())).0, "jwk.alg");
    assert!(compile_key(&jwk_key(&["PS512"], ps512)).is_ok());
    assert_eq!(refusal(&jwk_key(&["ES256"], with(ec_jwk(), "alg", json!("ES521")))).0, "jwk.alg");
    // Without an `alg` the allow-list alone decides.
    let mut bare = rsa_jwk();
    bare.as_object_mut().unwrap().remove("alg");
    assert!(compile_key(&jwk_key(&["RS256", "PS256"], bare)).is_ok());
}

#[test]
fn rsa_keys_have_2048_to_4096_bits_and_a_sound_exponent() {
    let key = |n: String, e: &str| jwk_key(&["RS256"], with(with(rsa_jwk(), "n", json!(n)), "e", json!(e)));
    let (field, e) = refusal(&key(modulus(1024), "AQAB"));
    assert_eq!((field, e), ("jwk.n", KeyError::RsaModulusSize { bits: 1024 }));
    assert_eq!(refusal(&key(modulus(2040), "AQAB")).1, KeyError::RsaModulusSize { bits: 2040 });
    assert_eq!(refusal(&key(modulus(4104), "AQAB")).1, KeyError::RsaModulusSize { bits: 4104 });
    assert!(compile_key(&key(modulus(2048), "AQAB")).is_ok());
    assert!(compile_key(&key(modulus(4096), "AQAB")).is_ok());
    // A leading zero byte does not count towards the size.
    let padded = URL_SAFE_NO_PAD.encode([vec![0u8], URL_SAFE_NO_PAD.decode(modulus(1024)).unwrap()].concat());
    assert_eq!(refusal(&key(padded, "AQAB")).1, KeyError::RsaModulusSize { bits: 1024 });
    let even = URL_SAFE_NO_PAD.encode([vec![0x80u8], vec![0; 255]].concat());
    assert_eq!(refusal(&key(even, "AQAB")), ("jwk.n", KeyError::RsaModulusEven));
    for e in ["AQ", "Ag", "AA", "AQAA", "AQAAAAAAAAAAAQ"] {
        assert_eq!(refusal(&key(modulus(2048), e)), ("jwk.e", KeyError::RsaExponent), "e = {e}");
    }
    assert!(compile_key(&key(modulus(2048), "Aw")).is_ok(), "e = 3");
}

#[test]
fn hmac_secrets_are_at_least_the_hash_size() {
    for (alg, min) in [("HS256", 32), ("HS384", 48), ("HS512", 64)] {
        let (field, e) = refusal(&secret_key(&[alg], min - 1));
        assert_eq!(field, "secret");
        assert!(e.to_string().starts_with(&format!("must be at least {min} bytes")), "{e}");
        assert!(compile_key(&secret_key(&[alg], min)).is_ok(), "{alg}");
    }
    // The strictest algorithm listed decides.
    assert_eq!(refusal(&secret_key(&["HS256", "HS512"], 40)).1, KeyError::SecretTooShort { alg: Algorithm::HS512, min: 64 });
    assert_eq!(refusal(&secret_key(&["HS256"], 0)).0, "secret");
}

#[test]
fn a_jwk_with_private_members_is_refused() {
    for member in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
        let (field, _) = refusal(&jwk_key(&["RS256"], with(rsa_jwk(), member, json!("AQAB"))));
        assert_eq!(field, format!("jwk.{member}"));
    }
    assert_eq!(refusal(&jwk_key(&["ES256"], with(ec_jwk(), "d", json!("AQAB")))).0, "jwk.d");
}

#[test]
fn an_ec_point_off_its_curve_or_an_unsupported_curve_is_refused() {
    let y = ec_jwk()["y"].as_str().unwrap().to_owned();
    let flipped = format!("{}{}", &y[..y.len() - 1], if y.ends_with('A') { "B" } else { "A" });
    assert!(matches!(refusal(&jwk_key(&["ES256"], with(ec_jwk(), "y", json!(flipped)))), ("jwk", KeyError::UnusableKey(_))));
    let p521 = with(with(ec_jwk(), "crv", json!("P-521")), "alg", json!("ES256"));
    assert_eq!(refusal(&jwk_key(&["ES256"], p521)).0, "jwk.crv");
    assert_eq!(refusal(&jwk_key(&["HS256"], json!({"kty": "oct", "k": "AAAA"}))).0, "jwk.kty");
}

fn source<'a>(kid: &'a str, algorithms: &'a [String], secret: Option<&'a [u8]>, jwk: Option<&'a Value>) -> KeySource<'a> {
    KeySource { kid: Some(kid), algorithms, secret, jwk, issuer: None }
}

#[test]
fn a_key_set_holds_one_kind_of_key_and_one_key_per_kid() {
    let (hs, rs, es) = (vec!["HS256".to_owned()], vec!["RS256".to_owned()], vec!["ES256".to_owned()]);
    let secret = [7u8; 32];
    let (rsa, ec) = (rsa_jwk(), ec_jwk());
    let e = compile_key_set([source("hs", &hs, Some(&secret), None), source("ec", &es, None, Some(&ec))]).unwrap_err();
    assert_eq!((e.index, e.kid.as_deref(), e.error.field()), (1, Some("ec"), "jwk"));
    assert_eq!(e.error, KeyError::MixedKinds { first: KeyKind::Hmac, this: KeyKind::EcP256 });
    let e = compile_key_set([source("rsa", &rs, None, Some(&rsa)), source("hs", &hs, Some(&secret), None)]).unwrap_err();
    assert_eq!((e.index, e.error.field()), (1, "secret"));
    let e = compile_key_set([source("a", &hs, Some(&secret), None), source("a", &hs, Some(&secret), None)]).unwrap_err();
    assert_eq!((e.index, e.error), (1, KeyError::DuplicateKid));
    let keys = compile_key_set([source("rsa", &rs, None, Some(&rsa)), source("ec", &es, None, Some(&ec))]).unwrap();
    assert_eq!(keys.len(), 2, "RSA and EC keys share a set");
}

#[test]
fn policy_compile_names_the_key_and_the_field() {
    let mut config: crate::config::FilterConfig = serde_json::from_value(json!({
        "config_version": "x", "services": [],
        "auth": {"issuer": "i", "audience": "a", "keys": [
            {"kid": "rsa-1", "algorithms": ["RS256"], "jwk": rsa_jwk()},
            {"kid": "ec-1", "algorithms": ["ES256"], "jwk": with(ec_jwk(), "use", json!("enc"))}
        ]}
    }))
    .unwrap();
    let e = crate::policy::Policy::compile(&config).unwrap_err();
    assert_eq!(e.to_string(), "auth.keys[1] (kid \"ec-1\"): jwk.use: is \"enc\": only a key for signatures (\"sig\") may verify tokens");
    config.auth.keys[1] = KeyConfig { kid: Some("hs".into()), algorithms: vec!["HS384".into()], secret: Some("s".repeat(47)), jwk: None, issuer: None };
    let e = crate::policy::Policy::compile(&config).unwrap_err();
    assert_eq!(e.to_string(), "auth.keys[1] (kid \"hs\"): secret: must be at least 48 bytes (384 bits) for HS384, the size of its hash (RFC 7518 3.2)");
    config.auth.keys[1].secret = Some("s".repeat(48));
    let e = crate::policy::Policy::compile(&config).unwrap_err();
    assert_eq!((e.item.as_str(), e.field.as_str()), ("auth.keys[1] (kid \"hs\")", "secret"), "{e}");
}
