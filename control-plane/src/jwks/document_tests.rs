use std::time::Duration;

use serde_json::{json, Value};

use super::*;

fn source(algorithms: &[&str]) -> JwksSource {
    JwksSource {
        issuer: "https://idp.example/".into(),
        uri: "https://idp.example/jwks".into(),
        algorithms: algorithms.iter().map(|a| (*a).to_owned()).collect(),
        refresh: Duration::from_secs(300),
        ca_pem: None,
    }
}

fn shipped() -> (Value, Value) {
    let jwks: Value = serde_json::from_str(include_str!("../../../filter/core/testdata/jwks.json")).unwrap();
    (jwks["keys"][0].clone(), jwks["keys"][1].clone())
}

fn compile(keys: Value, algorithms: &[&str]) -> Result<CompiledKeySet, DocumentError> {
    compile_document(json!({ "keys": keys }).to_string().as_bytes(), &source(algorithms))
}

#[test]
fn every_good_key_is_bound_to_the_issuer_with_its_own_algorithm() {
    let (rsa, ec) = shipped();
    let set = compile(json!([rsa, ec]), &["RS256", "ES256"]).unwrap();
    assert_eq!(set.kids(), ["ec-1".to_owned(), "rsa-1".to_owned()].into());
    assert!(set.skipped.is_empty());
    for key in &set.keys {
        assert_eq!(key.issuer.as_deref(), Some("https://idp.example/"));
        assert_eq!(key.secret, None);
    }
    assert_eq!(set.keys[0].algorithms, ["RS256"]);
    assert_eq!(set.keys[1].algorithms, ["ES256"]);
}

#[test]
fn a_key_without_alg_gets_the_allowed_algorithms_its_kind_can_verify() {
    let (mut rsa, mut ec) = shipped();
    rsa.as_object_mut().unwrap().remove("alg");
    ec.as_object_mut().unwrap().remove("alg");
    let set = compile(json!([rsa, ec]), &["RS256", "PS256", "ES256"]).unwrap();
    assert_eq!(set.keys[0].algorithms, ["RS256", "PS256"]);
    assert_eq!(set.keys[1].algorithms, ["ES256"]);
}

#[test]
fn keys_the_filter_would_refuse_are_skipped_and_named() {
    let (rsa, ec) = shipped();
    let mut encryption = rsa.clone();
    encryption["kid"] = json!("enc-1");
    encryption["use"] = json!("enc");
    encryption.as_object_mut().unwrap().remove("alg");
    let mut private = rsa.clone();
    private["kid"] = json!("leaked");
    private["d"] = json!("AAAA");
    let mut no_kid = rsa.clone();
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut twice = rsa.clone();
    twice["n"] = ec["x"].clone();
    let set = compile(json!([rsa, encryption, private, no_kid, twice, ec]), &["RS256"]).unwrap();
    assert_eq!(set.kids(), ["rsa-1".to_owned()].into(), "the EC key's ES256 is not allowed either");
    let skipped = set.skipped.join("\n");
    assert!(skipped.contains("keys[1] (kid \"enc-1\"): jwk.use"), "{skipped}");
    assert!(skipped.contains("keys[2] (kid \"leaked\"): jwk.d"), "{skipped}");
    assert!(skipped.contains("keys[3]: kid"), "{skipped}");
    assert!(skipped.contains("keys[4] (kid \"rsa-1\"): kid: a second key"), "{skipped}");
    assert!(skipped.contains("keys[5] (kid \"ec-1\"): jwk.alg"), "{skipped}");
}

#[test]
fn a_document_with_no_usable_key_is_an_error() {
    assert!(matches!(compile_document(b"<html>", &source(&["RS256"])), Err(DocumentError::NotJson(_))));
    assert_eq!(compile_document(b"{\"keys\": 1}", &source(&["RS256"])), Err(DocumentError::NoKeyList));
    assert!(matches!(compile(json!([]), &["RS256"]), Err(DocumentError::NoUsableKey(_))));
    let (_, ec) = shipped();
    let e = compile(json!([ec]), &["RS256"]).unwrap_err();
    assert!(e.to_string().contains("jwk.alg"), "{e}");
    let many: Vec<Value> = (0..=MAX_KEYS).map(|_| json!({})).collect();
    assert_eq!(compile(json!(many), &["RS256"]), Err(DocumentError::TooManyKeys(MAX_KEYS + 1)));
}
