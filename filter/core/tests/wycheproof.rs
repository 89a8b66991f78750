#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Google Wycheproof's JWS, JWK, ECDSA, RSA-PSS and HMAC vectors (tests/wycheproof/, see
//! its README) through the filter's own key compiler (`compile_key_set`) and signature
//! layer (`Verifier::verify_signature`, `VerifyingKey::verifies`). Every "valid" vector
//! verifies and every "invalid" one is refused, except the ones listed in `exception`
//! below and in the README, whose decision is asserted too. The per-file counts are
//! asserted, so the README's figures are the ones this test saw.

use std::collections::BTreeMap;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use serde_json::{json, Value};
use stagedoor_filter_core::token::{compile_key_set, KeySource, Verifier, VerifyingKey};

fn load(file: &str) -> Value {
    let path = format!("{}/tests/wycheproof/{file}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// What a vector file came to: labelled and decided alike, or listed with the reason.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    valid_verified: usize,
    invalid_refused: usize,
    /// reason -> tcIds, for vectors decided against their label (asserted, not ignored).
    exceptions: BTreeMap<&'static str, Vec<u64>>,
    /// Vectors whose decision differs from the label with no listed reason: the failures.
    wrong: Vec<String>,
}

impl Tally {
    fn record(&mut self, tc_id: u64, label: &str, accepted: bool, exception: Option<(&'static str, bool)>, why: &str) {
        match exception {
            Some((reason, expected)) if accepted == expected => self.exceptions.entry(reason).or_default().push(tc_id),
            Some((reason, expected)) => {
                self.wrong.push(format!("tcId {tc_id}: listed as {reason:?} (accepted = {expected}) but accepted = {accepted}: {why}"))
            }
            None if label == "valid" && accepted => self.valid_verified += 1,
            None if label == "invalid" && !accepted => self.invalid_refused += 1,
            None => self.wrong.push(format!("tcId {tc_id}: labelled {label}, accepted = {accepted}: {why}")),
        }
    }

    fn report(&self, file: &str) {
        let skipped: usize = self.exceptions.values().map(Vec::len).sum();
        println!("{file}: {} valid verified, {} invalid refused, {skipped} listed", self.valid_verified, self.invalid_refused);
        for (reason, ids) in &self.exceptions {
            println!("  {reason}: tcId {ids:?}");
        }
        assert!(self.wrong.is_empty(), "{file}: {} vectors decided wrong:\n{}", self.wrong.len(), self.wrong.join("\n"));
    }

    fn counts(&self) -> (usize, usize, usize) {
        (self.valid_verified, self.invalid_refused, self.exceptions.values().map(Vec::len).sum())
    }
}

const EMPTY_PAYLOAD: &str = "an empty payload is not a JWT (refused before any key is looked at)";
const ES512: &str = "ES512 / P-521 is not supported (the key is refused at config time)";
const SAME_AS_357: &str = "byte-identical to the valid tcId 357 (verified)";
const DROPPED_CHARACTER: &str =
    "'?' is not base64url and the MAC covers the string without it: only a verifier that drops characters accepts it";
const KEY_ALG_PS256: &str = "a PS384 token under a key whose own alg is PS256: RFC 7517 4.4 (the key's alg) refuses it";
const SHORT_HMAC_KEY: &str = "a 16-byte key: refused at config time, HS256 needs 32 bytes (RFC 7518 3.2)";

/// (reason, accepted) for the JWS vectors we decide against their label.
fn jws_exception(tc_id: u64) -> Option<(&'static str, bool)> {
    Some(match tc_id {
        259 | 264 | 268 | 272 | 320 | 325 => (EMPTY_PAYLOAD, false),
        347 | 351 => (ES512, false),
        367 | 370 => (SAME_AS_357, true),
        372 | 373 => (DROPPED_CHARACTER, false),
        346 | 350 => (KEY_ALG_PS256, false),
        _ => return None,
    })
}

/// The algorithms a key is configured with: its own `alg` when it names one, else every
/// algorithm of its kind (the most an allow-list can permit).
fn algorithms_for(jwk: &Value) -> Vec<String> {
    if let Some(alg) = jwk["alg"].as_str() {
        return vec![alg.to_owned()];
    }
    let family: &[&str] = match (jwk["kty"].as_str(), jwk["crv"].as_str()) {
        (Some("oct"), _) => &["HS256", "HS384", "HS512"],
        (Some("RSA"), _) => &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
        (_, Some("P-384")) => &["ES384"],
        _ => &["ES256"],
    };
    family.iter().map(|a| a.to_string()).collect()
}

/// A configured key, owned: an `oct` JWK becomes a `secret` of its raw bytes (the filter
/// takes HMAC keys only as secrets), anything else stays a JWK.
struct OwnedKey {
    kid: Option<String>,
    algorithms: Vec<String>,
    secret: Option<Vec<u8>>,
    jwk: Option<Value>,
}

/// One `k` in the JWK file has non-zero trailing bits; it is decoded all the same, so its
/// vector (a duplicate kid) is refused for the rule it tests, not for its encoding.
const LENIENT_BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true).with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

impl OwnedKey {
    fn from_jwk(jwk: &Value) -> Self {
        let kid = jwk["kid"].as_str().map(str::to_owned);
        let algorithms = algorithms_for(jwk);
        match jwk["k"].as_str() {
            Some(k) if jwk["kty"] == "oct" => Self { kid, algorithms, secret: Some(LENIENT_BASE64URL.decode(k).unwrap()), jwk: None },
            _ => Self { kid, algorithms, secret: None, jwk: Some(jwk.clone()) },
        }
    }

    fn source(&self) -> KeySource<'_> {
        KeySource { kid: self.kid.as_deref(), algorithms: &self.algorithms, secret: self.secret.as_deref(), jwk: self.jwk.as_ref(), issuer: None }
    }
}

/// The public half of an asymmetric JWK that a group gives only as a private key: what an
/// operator configures. (A private JWK itself is refused; the unit tests show that.)
fn public_half(jwk: &Value) -> Value {
    let mut public = jwk.clone();
    if jwk["kty"] != "oct" {
        if let Some(members) = public.as_object_mut() {
            for member in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
                members.remove(member);
            }
        }
    }
    public
}

/// The filter's verifier over a key set, or why the key set was refused at config time.
fn verifier(jwks: &[Value]) -> Result<Verifier, String> {
    let owned: Vec<OwnedKey> = jwks.iter().map(OwnedKey::from_jwk).collect();
    let keys = compile_key_set(owned.iter().map(OwnedKey::source)).map_err(|e| format!("config refused: {e}"))?;
    Ok(Verifier { issuer: "wycheproof".into(), audience: "wycheproof".into(), leeway_secs: 0, keys, jwks_issuers: vec![] })
}

/// Whether the filter's signature layer accepts a `jws` field (a compact string, or the
/// JSON serialization, which a Bearer header cannot carry: it is sent as its text).
fn decide(verifier: &Result<Verifier, String>, jws: &Value) -> (bool, String) {
    let Ok(verifier) = verifier else { return (false, verifier.as_ref().err().cloned().unwrap_or_default()) };
    let token = jws.as_str().map_or_else(|| jws.to_string(), str::to_owned);
    match verifier.verify_signature(&token) {
        Ok(_) => (true, "verified".into()),
        Err(e) => (false, format!("refused: {}", e.message())),
    }
}

fn group_key_set(group: &Value) -> Vec<Value> {
    let set = if group["public"].is_object() { &group["public"] } else { &group["private"] };
    match set["keys"].as_array() {
        Some(keys) => keys.iter().map(public_half).collect(),
        None => vec![public_half(set)],
    }
}

fn tests_of(group: &Value) -> &[Value] {
    group["tests"].as_array().map_or(&[], Vec::as_slice)
}

#[test]
fn json_web_signature_vectors() {
    let file = "json_web_signature_test.json";
    let mut tally = Tally::default();
    for group in load(file)["testGroups"].as_array().unwrap() {
        let verifier = verifier(&group_key_set(group));
        for test in tests_of(group) {
            let tc_id = test["tcId"].as_u64().unwrap();
            let (accepted, why) = decide(&verifier, &test["jws"]);
            tally.record(tc_id, test["result"].as_str().unwrap(), accepted, jws_exception(tc_id), &why);
        }
    }
    tally.report(file);
    assert_eq!(tally.counts(), (34, 353, 14), "{tally:?}");
}

#[test]
fn json_web_key_vectors() {
    let file = "json_web_key_test.json";
    let mut tally = Tally::default();
    for group in load(file)["testGroups"].as_array().unwrap() {
        let verifier = verifier(&group_key_set(group));
        for test in tests_of(group) {
            let (accepted, why) = decide(&verifier, &test["jws"]);
            println!("  tcId {} ({}, {}): {why}", test["tcId"], test["comment"].as_str().unwrap_or(""), test["result"]);
            tally.record(test["tcId"].as_u64().unwrap(), test["result"].as_str().unwrap(), accepted, None, &why);
        }
    }
    tally.report(file);
    assert_eq!(tally.counts(), (5, 21, 0), "{tally:?}");
}

/// One key from a raw-primitive file's group, compiled by the filter's key compiler.
fn compile_one(jwk: &Value, alg: &str) -> Result<VerifyingKey, String> {
    let key = OwnedKey { kid: None, algorithms: vec![alg.to_owned()], secret: None, jwk: Some(jwk.clone()) };
    compile_key_set([key.source()]).map(|mut keys| keys.remove(0)).map_err(|e| format!("config refused: {e}"))
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

/// A Wycheproof signature file through `VerifyingKey::verifies`, the call the JWS path makes.
fn signature_file(file: &str, alg: &str, jwk_of: impl Fn(&Value) -> Value) -> Tally {
    let mut tally = Tally::default();
    for group in load(file)["testGroups"].as_array().unwrap() {
        let key = compile_one(&jwk_of(group), alg);
        for test in tests_of(group) {
            let (message, signature) = (hex(test["msg"].as_str().unwrap()), hex(test["sig"].as_str().unwrap()));
            let (accepted, why) = match &key {
                Ok(key) => (key.verifies(key.algorithms[0], &message, &URL_SAFE_NO_PAD.encode(signature)), String::new()),
                Err(e) => (false, e.clone()),
            };
            tally.record(test["tcId"].as_u64().unwrap(), test["result"].as_str().unwrap(), accepted, None, &why);
        }
    }
    tally.report(file);
    tally
}

/// The group's JWK, or one built from its uncompressed point where the file gives none.
fn ec_jwk(group: &Value, crv: &str, size: usize) -> Value {
    if group["publicKeyJwk"].is_object() {
        return group["publicKeyJwk"].clone();
    }
    let point = hex(group["publicKey"]["uncompressed"].as_str().unwrap());
    assert_eq!((point.len(), point[0]), (1 + 2 * size, 4), "an uncompressed point");
    let (x, y) = point[1..].split_at(size);
    json!({"kty": "EC", "crv": crv, "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)})
}

#[test]
fn ecdsa_p256_sha256_p1363_vectors() {
    let tally = signature_file("ecdsa_secp256r1_sha256_p1363_test.json", "ES256", |g| ec_jwk(g, "P-256", 32));
    assert_eq!(tally.counts(), (173, 89, 0), "{tally:?}");
}

#[test]
fn ecdsa_p384_sha384_p1363_vectors() {
    let tally = signature_file("ecdsa_secp384r1_sha384_p1363_test.json", "ES384", |g| ec_jwk(g, "P-384", 48));
    assert_eq!(tally.counts(), (193, 87, 0), "{tally:?}");
}

#[test]
fn rsa_pss_2048_sha256_vectors() {
    let tally = signature_file("rsa_pss_2048_sha256_mgf1_32_test.json", "PS256", |g| g["publicKeyJwk"].clone());
    assert_eq!(tally.counts(), (63, 45, 0), "{tally:?}");
}

/// HMAC-SHA256 vectors through an HS256 key. Only full-length tags are JWS MACs: the
/// 128-bit truncated ones are not run (counted apart).
#[test]
fn hmac_sha256_vectors() {
    let file = "hmac_sha256_test.json";
    let mut tally = Tally::default();
    let mut truncated = 0;
    for group in load(file)["testGroups"].as_array().unwrap() {
        if group["tagSize"] != 256 {
            truncated += tests_of(group).len();
            continue;
        }
        for test in tests_of(group) {
            let secret = hex(test["key"].as_str().unwrap());
            let key = OwnedKey { kid: None, algorithms: vec!["HS256".into()], secret: Some(secret), jwk: None };
            let (message, tag) = (hex(test["msg"].as_str().unwrap()), hex(test["tag"].as_str().unwrap()));
            let (accepted, why) = match compile_key_set([key.source()]) {
                Ok(keys) => (keys[0].verifies(keys[0].algorithms[0], &message, &URL_SAFE_NO_PAD.encode(tag)), String::new()),
                Err(e) => (false, format!("config refused: {e}")),
            };
            let exception = (group["keySize"] == 128).then_some((SHORT_HMAC_KEY, false));
            tally.record(test["tcId"].as_u64().unwrap(), test["result"].as_str().unwrap(), accepted, exception, &why);
        }
    }
    println!("{file}: {truncated} vectors with 128-bit truncated tags not run");
    tally.report(file);
    assert_eq!((tally.counts(), truncated), ((30, 54, 3), 87), "{tally:?}");
}
