//! Keys bound to an issuer (from its JWKS): each vouches for its own issuer only, and an
//! issuer whose keys have not arrived is refused as such.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::config::KeyConfig;

const SECRET: &str = "test-secret-test-secret-test-secret!!";
const NOW: i64 = 1_800_000_000;
const IDP: &str = "https://idp.example";

fn rsa_public() -> Value {
    let jwks: Value = serde_json::from_str(include_str!("../../testdata/jwks.json")).unwrap();
    jwks["keys"][0].clone()
}

fn verifier(with_idp_key: bool) -> Verifier {
    let mut configs = vec![KeyConfig { kid: Some("dev".into()), algorithms: vec!["HS256".into()], secret: Some(SECRET.into()), jwk: None, issuer: None }];
    if with_idp_key {
        configs.push(KeyConfig { kid: Some("rsa-1".into()), algorithms: vec!["RS256".into()], secret: None, jwk: Some(rsa_public()), issuer: Some(IDP.into()) });
    }
    Verifier {
        issuer: "tickettoken".into(),
        audience: "tickettoken-platform".into(),
        leeway_secs: 30,
        keys: compile_key_set(configs.iter().map(KeySource::from)).unwrap(),
        jwks_issuers: vec![IDP.into()],
    }
}

fn claims(iss: &str) -> Value {
    json!({"sub": "u1", "iss": iss, "aud": "tickettoken-platform", "type": "access", "tenant_id": "t1", "exp": NOW + 900, "iat": NOW})
}

fn rs256(kid: &str, iss: &str) -> String {
    let key = EncodingKey::from_rsa_pem(include_bytes!("../../testdata/rsa_pkcs8.pem")).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    encode(&header, &claims(iss), &key).unwrap()
}

fn hs256(iss: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("dev".into());
    encode(&header, &claims(iss), &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

#[test]
fn an_idp_key_verifies_its_issuers_tokens_beside_a_development_secret() {
    let v = verifier(true);
    assert!(v.verify(&rs256("rsa-1", IDP), NOW).is_ok());
    assert!(v.verify(&hs256("tickettoken"), NOW).is_ok());
}

#[test]
fn a_key_vouches_for_its_own_issuer_only() {
    let v = verifier(true);
    assert_eq!(v.verify(&rs256("rsa-1", "tickettoken"), NOW).unwrap_err(), TokenError::WrongIssuer, "the IdP's key cannot mint ours");
    assert_eq!(v.verify(&hs256(IDP), NOW).unwrap_err(), TokenError::WrongIssuer, "our secret cannot mint the IdP's");
}

#[test]
fn an_unknown_kid_is_refused_and_named_for_the_report() {
    let v = verifier(true);
    let token = rs256("rotated-2", IDP);
    assert_eq!(v.verify(&token, NOW).unwrap_err(), TokenError::UnknownKey);
    assert_eq!(v.unknown_key_of(&token), Some((IDP.to_owned(), "rotated-2".to_owned())));
    assert_eq!(v.unknown_key_of(&rs256("rotated-2", "someone-else")), None, "only JWKS issuers are reported");
}

#[test]
fn before_the_first_fetch_the_issuers_tokens_are_refused_as_keys_unavailable() {
    let v = verifier(false);
    assert_eq!(v.verify(&rs256("rsa-1", IDP), NOW).unwrap_err(), TokenError::KeysUnavailable);
    assert_eq!(v.verify(&rs256("rsa-1", "tickettoken"), NOW).unwrap_err(), TokenError::UnknownKey);
    assert!(v.verify(&hs256("tickettoken"), NOW).is_ok(), "other issuers are not held up");
}

#[test]
fn public_keys_and_a_secret_may_not_share_one_issuer() {
    let configs = [
        KeyConfig { kid: Some("dev".into()), algorithms: vec!["HS256".into()], secret: Some(SECRET.into()), jwk: None, issuer: Some(IDP.into()) },
        KeyConfig { kid: Some("rsa-1".into()), algorithms: vec!["RS256".into()], secret: None, jwk: Some(rsa_public()), issuer: Some(IDP.into()) },
    ];
    let e = compile_key_set(configs.iter().map(KeySource::from)).unwrap_err();
    assert!(matches!(e.error, KeyError::MixedKinds { .. }), "{e}");
}
