//! The token endpoint's pure parts: refresh and access tokens never pass for each other,
//! successors are deterministic, the family's absolute expiry holds across rotations, and
//! the registry section's rules name their field.

use stagedoor_filter_core::token::TokenError;

use super::claims::{refresh_audience, Signer, REFRESH_TYPE};
use crate::registry::Registry;

const REFRESH_SECRET: &str = "unit-test-refresh-secret-refresh-0123456";

fn registry_with(endpoint: &str) -> Result<Registry, crate::registry::RegistryError> {
    let yaml = format!(
        "{}token_endpoint:\n  instance: {{ address: 127.0.0.1, port: 18090 }}\n  refresh_key: {{ kid: refresh-1, secret: {REFRESH_SECRET} }}\n{endpoint}services:\n  - name: auth\n    routes: [{{ prefix: /api/v1/auth }}]\n",
        crate::test_support::AUTH
    );
    Registry::parse("r.yaml", &yaml)
}

fn registry() -> Registry {
    registry_with("  family_lifetime_secs: 1000\n  idle_secs: 300\n").unwrap()
}

fn signer(registry: &Registry) -> Signer<'_> {
    Signer { registry, endpoint: registry.token_endpoint.as_ref().unwrap() }
}

const NOW: i64 = 1_800_000_000;

#[test]
fn a_first_refresh_token_verifies_as_a_refresh_token_and_never_as_an_access_token() {
    let registry = registry();
    let signer = signer(&registry);
    let claims = signer.first_refresh_claims("fam1", "u1", "t1", Some("customer"), NOW);
    assert_eq!((claims.jti.as_str(), claims.fid.as_str(), claims.token_type.as_str()), ("fam1", "fam1", REFRESH_TYPE));
    assert_eq!((claims.fexp, claims.exp), (NOW + 1000, NOW + 300));
    assert_eq!(claims.aud, refresh_audience("tickettoken-platform"));
    let token = signer.sign_refresh(&claims).unwrap();
    assert_eq!(signer.verify_refresh(&token, NOW + 1, false).unwrap(), claims);

    let policy = stagedoor_filter_core::Policy::compile(&crate::translate::filter_config(&registry, None)).unwrap();
    assert_eq!(policy.verifier.verify(&token, NOW + 1), Err(TokenError::UnknownKey), "the filter never holds the refresh key");
}

#[test]
fn an_access_token_is_refused_as_a_refresh_token() {
    let registry = registry();
    let signer = signer(&registry);
    let request = crate::token::MintRequest {
        sub: "u1".into(),
        tenant: "t1".into(),
        role: "customer".into(),
        venues: None,
        permissions: None,
        ttl: std::time::Duration::from_secs(900),
        token_type: "access".into(),
    };
    let access = crate::token::mint(&registry, &request, NOW).unwrap();
    let refused = signer.verify_refresh(&access, NOW, false).unwrap_err();
    assert_eq!((refused.status, refused.code), (401, "TOKEN_WRONG_TYPE"));

    // Signed with the refresh key but claiming to be an access token: still refused.
    let mut claims = signer.first_refresh_claims("f", "u1", "t1", None, NOW);
    claims.token_type = "access".into();
    let forged_type = signer.sign_refresh(&claims).unwrap();
    assert_eq!(signer.verify_refresh(&forged_type, NOW, false).unwrap_err().code, "TOKEN_WRONG_TYPE");
    let mut claims = signer.first_refresh_claims("f", "u1", "t1", None, NOW);
    claims.aud = "tickettoken-platform".into();
    let access_audience = signer.sign_refresh(&claims).unwrap();
    assert_eq!(signer.verify_refresh(&access_audience, NOW, false).unwrap_err().code, "TOKEN_WRONG_AUDIENCE");
}

#[test]
fn a_successor_pair_is_the_same_bytes_every_time_and_its_access_token_carries_the_family() {
    let registry = registry();
    let signer = signer(&registry);
    let first = signer.first_refresh_claims("fam1", "u1", "t1", Some("customer"), NOW);
    let a = signer.successor_pair(&first, "j2", (NOW + 5) * 1000 + 123).unwrap();
    let b = signer.successor_pair(&first, "j2", (NOW + 5) * 1000 + 123).unwrap();
    assert_eq!(a, b, "a predecessor in its grace gets the very same pair");
    assert_ne!(a, signer.successor_pair(&first, "j3", (NOW + 5) * 1000).unwrap());

    let policy = stagedoor_filter_core::Policy::compile(&crate::translate::filter_config(&registry, None)).unwrap();
    let access = policy.verifier.verify(&a.access_token, NOW + 6).unwrap();
    assert_eq!(access.family_revocation_key.as_deref(), Some("family:fam1"));
    assert_eq!((access.subject.as_str(), access.tenant.as_str(), access.exp), ("u1", "t1", NOW + 5 + 900));
    assert_eq!(access.revocation_key, "j2.a");
    use base64::Engine;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(a.access_token.split('.').nth(1).unwrap()).unwrap();
    let access_claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(access_claims["fexp"], NOW + 1000, "a logout with the access token alone knows the family's end");
    assert_eq!(a.expires_in, 900);

    let next = signer.verify_refresh(&a.refresh_token, NOW + 6, false).unwrap();
    assert_eq!((next.jti.as_str(), next.fid.as_str(), next.fexp, next.exp), ("j2", "fam1", NOW + 1000, NOW + 5 + 300));
}

#[test]
fn rotation_never_extends_the_familys_absolute_expiry() {
    let registry = registry();
    let signer = signer(&registry);
    let mut claims = signer.first_refresh_claims("fam1", "u1", "t1", None, NOW);
    for step in 1..=4 {
        let at = NOW + step * 250;
        let pair = signer.successor_pair(&claims, &format!("j{step}"), at * 1000).unwrap();
        match signer.verify_refresh(&pair.refresh_token, at, false) {
            Ok(next) => {
                assert_eq!(next.fexp, NOW + 1000);
                assert!(next.exp <= NOW + 1000, "idle expiry capped by the family's");
                claims = next;
            }
            Err(refused) => {
                assert_eq!((step, refused.code), (4, "TOKEN_EXPIRED"), "only at the family's end");
                return;
            }
        }
    }
    panic!("the family outlived its absolute expiry");
}

#[test]
fn an_idle_refresh_token_expires_but_still_names_its_family_for_logout() {
    let registry = registry();
    let signer = signer(&registry);
    let token = signer.sign_refresh(&signer.first_refresh_claims("fam1", "u1", "t1", None, NOW)).unwrap();
    assert_eq!(signer.verify_refresh(&token, NOW + 301, false).unwrap_err().code, "TOKEN_EXPIRED");
    assert_eq!(signer.verify_refresh(&token, NOW + 301, true).unwrap().fid, "fam1");
    assert_eq!(signer.verify_refresh(&token, NOW + 1000, true).unwrap_err().code, "TOKEN_EXPIRED", "the family is over");
    let early = signer.sign_refresh(&signer.first_refresh_claims("fam2", "u1", "t1", None, NOW + 31)).unwrap();
    assert_eq!(signer.verify_refresh(&early, NOW, false).unwrap_err().code, "TOKEN_ISSUED_IN_FUTURE", "past the 30 s leeway");
    let skewed = signer.sign_refresh(&signer.first_refresh_claims("fam3", "u1", "t1", None, NOW + 30)).unwrap();
    assert!(signer.verify_refresh(&skewed, NOW, false).is_ok(), "within the leeway");
}

#[test]
fn the_registry_section_names_the_field_at_fault() {
    let cases = [
        ("  grace_secs: 61\n", "token_endpoint: grace_secs: 61 is outside 0..=60 seconds"),
        ("  access_kid: nope\n", "token_endpoint: access_kid: no key in auth.keys has kid \"nope\""),
        ("  idle_secs: 900000\n", "token_endpoint: idle_secs: 900000 is outside 10..=604800 seconds"),
    ];
    for (extra, expected) in cases {
        let error = registry_with(extra).unwrap_err().to_string();
        assert!(error.contains(expected), "{extra}: {error}");
    }
    let same_secret = crate::test_support::AUTH.replace("unit-test-secret-unit-test-secret-0123", REFRESH_SECRET);
    let yaml = format!(
        "{same_secret}token_endpoint:\n  instance: {{ address: 127.0.0.1, port: 1 }}\n  refresh_key: {{ kid: r, secret: {REFRESH_SECRET} }}\nservices: []\n"
    );
    let error = Registry::parse("r.yaml", &yaml).unwrap_err().to_string();
    assert!(error.contains("refresh_key.secret: is also an access-token key's secret"), "{error}");
    let short = format!("{}token_endpoint:\n  instance: {{ address: 127.0.0.1, port: 1 }}\n  refresh_key: {{ kid: r, secret: short }}\nservices: []\n", crate::test_support::AUTH);
    assert!(Registry::parse("r.yaml", &short).unwrap_err().to_string().contains("at least 32 bytes"));
    let unknown = format!("{}token_endpoint:\n  instance: {{ address: 127.0.0.1, port: 1 }}\n  refresh_key: {{ kid: r, secret: {REFRESH_SECRET} }}\n  grace: 5\nservices: []\n", crate::test_support::AUTH);
    assert!(Registry::parse("r.yaml", &unknown).unwrap_err().to_string().contains("unknown field `grace`"));
}

#[test]
fn the_served_registry_redacts_the_refresh_secret() {
    let registry = registry();
    let yaml = crate::api::registry_yaml(&registry);
    assert!(!yaml.contains(REFRESH_SECRET), "{yaml}");
    assert!(yaml.contains("refresh_key"));
}
