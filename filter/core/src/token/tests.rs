use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::config::KeyConfig;

const SECRET: &str = "test-secret-test-secret-test-secret!!";
const NOW: i64 = 1_800_000_000;

fn jwks() -> Value {
    serde_json::from_str(include_str!("../../testdata/jwks.json")).unwrap()
}

fn verifier() -> Verifier {
    let jwks = jwks();
    let keys = [
        KeyConfig { kid: None, algorithms: vec!["HS256".into()], secret: Some(SECRET.into()), jwk: None, issuer: None },
        KeyConfig { kid: Some("hs-2".into()), algorithms: vec!["HS256".into()], secret: Some(format!("{SECRET}-2")), jwk: None, issuer: None },
        KeyConfig { kid: Some("rsa-1".into()), algorithms: vec!["RS256".into()], secret: None, jwk: Some(jwks["keys"][0].clone()), issuer: None },
        KeyConfig { kid: Some("ec-1".into()), algorithms: vec!["ES256".into()], secret: None, jwk: Some(jwks["keys"][1].clone()), issuer: None },
    ];
    Verifier {
        issuer: "tickettoken".into(),
        audience: "tickettoken-platform".into(),
        leeway_secs: 30,
        keys: keys.iter().map(|k| compile_key(k).unwrap()).collect(),
        jwks_issuers: vec![],
    }
}

fn claims() -> Value {
    json!({
        "sub": "u1", "iss": "tickettoken", "aud": "tickettoken-platform", "type": "access",
        "tenant_id": "t1", "role": "venue-manager", "venues": ["v1", "v2"],
        "exp": NOW + 900, "iat": NOW, "jti": "j1"
    })
}

fn hs(claims: &Value) -> String {
    encode(&Header::default(), claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

fn with(patch: Value) -> Value {
    let mut c = claims();
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn err(token: &str) -> TokenError {
    verifier().verify(token, NOW).unwrap_err()
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn a_good_hs256_token_verifies() {
    let t = verifier().verify(&hs(&claims()), NOW).unwrap();
    assert_eq!(t.subject, "u1");
    assert_eq!(t.tenant, "t1");
    assert_eq!(t.role.as_deref(), Some("venue-manager"));
    assert_eq!(t.venues, Some(vec!["v1".into(), "v2".into()]));
    assert_eq!(t.permissions, None);
    assert_eq!(t.revocation_key, "j1");
}

#[test]
fn rs256_and_es256_keys_are_chosen_by_kid() {
    let rsa = EncodingKey::from_rsa_pem(include_bytes!("../../testdata/rsa_pkcs8.pem")).unwrap();
    let ec = EncodingKey::from_ec_pem(include_bytes!("../../testdata/ec_pkcs8.pem")).unwrap();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rsa-1".into());
    assert!(verifier().verify(&encode(&h, &claims(), &rsa).unwrap(), NOW).is_ok());
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("ec-1".into());
    assert!(verifier().verify(&encode(&h, &claims(), &ec).unwrap(), NOW).is_ok());
    // The right algorithm with the wrong kid fails.
    h.kid = Some("rsa-1".into());
    assert_eq!(verifier().verify(&encode(&h, &claims(), &ec).unwrap(), NOW).unwrap_err(), TokenError::AlgorithmNotAllowed);
    h.kid = Some("nope".into());
    assert_eq!(verifier().verify(&encode(&h, &claims(), &ec).unwrap(), NOW).unwrap_err(), TokenError::UnknownKey);
}

#[test]
fn rotated_keys_are_live_at_once() {
    let h = Header { kid: Some("hs-2".into()), ..Header::default() };
    let t = encode(&h, &claims(), &EncodingKey::from_secret(format!("{SECRET}-2").as_bytes())).unwrap();
    assert!(verifier().verify(&t, NOW).is_ok());
    // Signed with the other live key but naming this one: bad signature.
    let t = encode(&h, &claims(), &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
    assert_eq!(err(&t), TokenError::InvalidSignature);
}

#[test]
fn alg_none_in_any_spelling_and_algorithm_confusion_are_refused() {
    let payload = b64(&claims().to_string());
    for alg in ["none", "None", "NONE", "nOnE", "", "hs256", "HS256 "] {
        let header = b64(&json!({"alg": alg, "typ": "JWT"}).to_string());
        for sig in ["", "e30"] {
            let e = err(&format!("{header}.{payload}.{sig}"));
            assert!(matches!(e, TokenError::AlgorithmNotAllowed | TokenError::Malformed(_)), "{alg:?}/{sig:?}: {e:?}");
        }
    }
    // HS256 signed with the RSA public key's bytes, naming the RSA key.
    let h = Header { kid: Some("rsa-1".into()), ..Header::default() };
    let t = encode(&h, &claims(), &EncodingKey::from_secret(jwks()["keys"][0]["n"].as_str().unwrap().as_bytes())).unwrap();
    assert_eq!(err(&t), TokenError::AlgorithmNotAllowed);
    // RS256 against the HMAC key.
    let rsa = EncodingKey::from_rsa_pem(include_bytes!("../../testdata/rsa_pkcs8.pem")).unwrap();
    assert_eq!(err(&encode(&Header::new(Algorithm::RS256), &claims(), &rsa).unwrap()), TokenError::AlgorithmNotAllowed);
}

#[test]
fn keys_that_invite_confusion_are_refused_at_config_time() {
    let jwks = jwks();
    let bad = [
        KeyConfig { kid: None, algorithms: vec!["RS256".into()], secret: Some(SECRET.into()), jwk: None, issuer: None },
        KeyConfig { kid: None, algorithms: vec!["HS256".into()], secret: None, jwk: Some(jwks["keys"][0].clone()), issuer: None },
        KeyConfig { kid: None, algorithms: vec!["none".into()], secret: Some(SECRET.into()), jwk: None, issuer: None },
        KeyConfig { kid: None, algorithms: vec![], secret: Some(SECRET.into()), jwk: None, issuer: None },
        KeyConfig { kid: None, algorithms: vec!["HS256".into()], secret: Some("short".into()), jwk: None, issuer: None },
        KeyConfig { kid: None, algorithms: vec!["HS256".into()], secret: None, jwk: None, issuer: None },
        KeyConfig { kid: None, algorithms: vec!["ES256".into()], secret: None, jwk: Some(json!({"kty": "EC"})), issuer: None },
    ];
    for k in bad {
        assert!(compile_key(&k).is_err(), "{k:?}");
    }
}

#[test]
fn each_claim_failure_has_its_code() {
    assert_eq!(err(&hs(&with(json!({"exp": NOW - 31})))), TokenError::Expired);
    assert!(verifier().verify(&hs(&with(json!({"exp": NOW - 29}))), NOW).is_ok(), "leeway");
    assert_eq!(err(&hs(&with(json!({"exp": null})))), TokenError::InvalidClaims("exp is required"));
    assert_eq!(err(&hs(&with(json!({"nbf": NOW + 31})))), TokenError::NotYetValid);
    assert_eq!(err(&hs(&with(json!({"iat": NOW + 31})))), TokenError::IssuedInFuture);
    assert_eq!(err(&hs(&with(json!({"iss": "evil"})))), TokenError::WrongIssuer);
    assert_eq!(err(&hs(&with(json!({"iss": null})))), TokenError::WrongIssuer);
    assert_eq!(err(&hs(&with(json!({"aud": "other"})))), TokenError::WrongAudience);
    assert!(verifier().verify(&hs(&with(json!({"aud": ["x", "tickettoken-platform"]}))), NOW).is_ok());
    assert_eq!(err(&hs(&with(json!({"type": "refresh"})))), TokenError::WrongType);
    assert_eq!(err(&hs(&with(json!({"type": null})))), TokenError::WrongType);
    assert_eq!(err(&hs(&with(json!({"tenant_id": ""})))), TokenError::MissingTenant);
    assert_eq!(err(&hs(&with(json!({"tenant_id": 7})))), TokenError::MissingTenant);
    assert_eq!(err(&hs(&with(json!({"tenant_id": null})))), TokenError::MissingTenant);
    assert_eq!(err(&hs(&with(json!({"sub": null})))), TokenError::MissingSubject);
    assert!(matches!(err(&hs(&with(json!({"venues": ["a,b"]})))), TokenError::InvalidClaims(_)));
    assert!(matches!(err(&hs(&with(json!({"permissions": ["a:b\r\nx-tenant-id: t2"]})))), TokenError::InvalidClaims(_)));
    assert!(matches!(err(&hs(&with(json!({"tenant_id": "t1\nx"})))), TokenError::InvalidClaims(_)));
    assert!(matches!(err(&hs(&with(json!({"venues": "v1"})))), TokenError::InvalidClaims(_)));
}

#[test]
fn the_signature_is_checked_before_any_claim() {
    let token = hs(&with(json!({"exp": NOW - 1000})));
    let (head, _) = token.rsplit_once('.').unwrap();
    assert_eq!(err(&format!("{head}.AAAA")), TokenError::InvalidSignature);
    let tampered = format!("{}.{}.{}", head.split('.').next().unwrap(), b64(&with(json!({"tenant_id": "t2"})).to_string()), token.rsplit('.').next().unwrap());
    assert_eq!(err(&tampered), TokenError::InvalidSignature);
}

#[test]
fn the_authorization_header_yields_exactly_one_bearer_token() {
    assert_eq!(bearer_token(&[]), Err(TokenError::Missing));
    assert_eq!(bearer_token(&["Bearer abc.def.ghi"]), Ok("abc.def.ghi"));
    assert_eq!(bearer_token(&["bearer abc.def.ghi"]), Ok("abc.def.ghi"));
    assert_eq!(bearer_token(&["Bearer "]), Err(TokenError::Missing));
    assert!(matches!(bearer_token(&["Bearer a.b.c", "Bearer d.e.f"]), Err(TokenError::Malformed(_))));
    assert!(matches!(bearer_token(&["Bearer a.b.c, Bearer d.e.f"]), Err(TokenError::Malformed(_))));
    assert!(matches!(bearer_token(&["Bearer a.b.c d.e.f"]), Err(TokenError::Malformed(_))));
    assert!(matches!(bearer_token(&["Basic dXNlcjpwYXNz"]), Err(TokenError::Malformed(_))));
    assert!(matches!(bearer_token(&["abc.def.ghi"]), Err(TokenError::Malformed(_))));
    let huge = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
    assert_eq!(bearer_token(&[huge.as_str()]), Err(TokenError::TooLarge));
}

#[test]
fn malformed_tokens_never_panic() {
    for t in ["", ".", "..", "...", "a.b", "a.b.c.d", "e30.e30.e30", "!!!.###.$$$", "eyJhbGciOiJIUzI1NiJ9..x"] {
        assert!(verifier().verify(t, NOW).is_err(), "{t}");
    }
}

#[test]
fn without_a_jti_the_revocation_key_is_the_tokens_hash() {
    let token = hs(&with(json!({"jti": null})));
    let t = verifier().verify(&token, NOW).unwrap();
    assert_eq!(t.revocation_key, hex_sha256(token.as_bytes()));
    assert_eq!(t.revocation_key.len(), 64);
}
