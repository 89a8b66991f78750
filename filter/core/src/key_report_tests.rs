//! The decision for tokens of an issuer whose keys come from a JWKS: refused with the
//! reason, and the unknown kid noted for the control plane, only where it can help.

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

use super::tests::{config, denial, Harness, NOW};
use crate::config::{FilterConfig, JwksConfig, KeyReportConfig};
use crate::key_reports::KeyReport;
use crate::Policy;

const IDP: &str = "https://idp.example/";

fn with_jwks(report: bool) -> FilterConfig {
    let mut config = config();
    config.auth.jwks = Some(JwksConfig {
        issuers: vec![IDP.into()],
        report: report.then(|| KeyReportConfig { cluster: "cp".into(), authority: "cp".into(), path: "/v1/keys/unknown".into() }),
    });
    config
}

fn idp_bearer(kid: &str) -> String {
    let header = Header { kid: Some(kid.into()), ..Header::default() };
    let claims = json!({"sub": "u1", "iss": IDP, "aud": "tickettoken-platform", "type": "access", "tenant_id": "t1", "exp": NOW + 900});
    format!("Bearer {}", encode(&header, &claims, &EncodingKey::from_secret(b"whatever-the-idp-signs-with-0123456")).unwrap())
}

#[test]
fn an_issuer_without_keys_yet_is_refused_as_such_and_its_kid_reported() {
    let mut h = Harness::with(with_jwks(true));
    let outcome = h.run("GET", "/api/v1/venues/v1", &[("authorization", &idp_bearer("k1"))]);
    assert_eq!(denial(&outcome), (401, "TOKEN_KEYS_UNAVAILABLE"));
    assert_eq!(h.state.key_reports.take(), [KeyReport { issuer: IDP.into(), kid: "k1".into() }]);
}

#[test]
fn unknown_kids_are_reported_only_with_somewhere_to_report_them() {
    let mut h = Harness::with(with_jwks(false));
    let outcome = h.run("GET", "/api/v1/venues/v1", &[("authorization", &idp_bearer("k1"))]);
    assert_eq!(denial(&outcome), (401, "TOKEN_KEYS_UNAVAILABLE"));
    assert!(h.state.key_reports.is_empty());
}

#[test]
fn the_gateways_own_tokens_with_an_unknown_kid_are_not_reported() {
    let mut h = Harness::with(with_jwks(true));
    let header = Header { kid: Some("nope".into()), ..Header::default() };
    let claims = json!({"sub": "u1", "iss": "tickettoken", "aud": "tickettoken-platform", "type": "access", "tenant_id": "t1", "exp": NOW + 900});
    let token = encode(&header, &claims, &EncodingKey::from_secret(super::tests::SECRET.as_bytes())).unwrap();
    let outcome = h.run("GET", "/api/v1/venues/v1", &[("authorization", &format!("Bearer {token}"))]);
    assert_eq!(denial(&outcome), (401, "TOKEN_UNKNOWN_KEY"));
    assert!(h.state.key_reports.is_empty());
}

#[test]
fn the_compiler_names_what_is_wrong_with_jwks_settings() {
    let mut empty = with_jwks(true);
    empty.auth.jwks.as_mut().unwrap().issuers.clear();
    assert_eq!(Policy::compile(&empty).unwrap_err().to_string(), "auth.jwks: issuers: list at least one, none empty");
    let mut stray = config();
    stray.auth.keys[0].issuer = Some(IDP.into());
    assert_eq!(Policy::compile(&stray).unwrap_err().to_string(), format!("auth.keys[0]: issuer: {IDP:?} is not in auth.jwks.issuers"));
    let mut only_jwks = with_jwks(true);
    only_jwks.auth.keys.clear();
    assert!(Policy::compile(&only_jwks).is_ok(), "a JWKS issuer may have no keys yet");
    let mut nothing = config();
    nothing.auth.keys.clear();
    assert!(Policy::compile(&nothing).is_err(), "without JWKS issuers a key is still required");
}
