use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::cache::TokenCache;
use crate::clock::Clock;
use crate::config::{AuthConfig, FilterConfig, HeaderPolicyConfig, KeyConfig, RuleConfig, ServiceConfig, Unmatched};
use crate::revocation::{RevocationList, RevocationUpdate};

pub(crate) const SECRET: &str = "decision-secret-decision-secret-0123";
pub(crate) const NOW: i64 = 1_800_000_000;

pub(crate) fn rule(method: &str, path: &str, permission: &str) -> RuleConfig {
    RuleConfig { permission: permission.into(), ..RuleConfig::route(method, path) }
}

pub(crate) fn config() -> FilterConfig {
    FilterConfig {
        config_version: "test".into(),
        services: vec![
            ServiceConfig {
                name: "auth".into(),
                prefixes: vec!["/api/v1/auth".into()],
                public_paths: vec!["/api/v1/auth/login".into(), "/api/v1/auth/public/*".into()],
                rules: vec![],
                request_headers: HeaderPolicyConfig::default(),
                unmatched: Unmatched::Authenticated,
                validation: vec![],
                require_signatures: false,
                signed_routes: vec![],
                rbac_shadow: false,
            },
            ServiceConfig {
                name: "event".into(),
                prefixes: vec!["/api/v1/events".into(), "/api/v1/venues".into()],
                public_paths: vec![],
                rules: vec![
                    rule("POST", "/api/v1/events", "events:create"),
                    rule("POST", "/api/v1/venues/{venueId}/events", "events:create"),
                    rule("GET", "/api/v1/events/users/{userId}/tickets", "tickets:view"),
                    rule("POST", "/api/v1/events/validate", "tickets:validate"),
                ],
                request_headers: HeaderPolicyConfig { allow: vec!["x-echo-*".into()], allow_any: false },
                unmatched: Unmatched::Authenticated,
                validation: vec![],
                require_signatures: false,
                signed_routes: vec![],
                rbac_shadow: false,
            },
        ],
        auth: AuthConfig {
            issuer: "tickettoken".into(),
            audience: "tickettoken-platform".into(),
            leeway_secs: 30,
            keys: vec![KeyConfig { kid: None, algorithms: vec!["HS256".into()], secret: Some(SECRET.into()), jwk: None, issuer: None }],
            jwks: None,
        },
        roles: crate::defaults::roles(),
        identity_signing_key: None,
        revocation: None,
        token_cache_entries: 16,
        webhooks: vec![crate::config::WebhookConfig { path: "/api/v1/auth/public/stripe".into(), stripe_secret: "whsec".into() }],
        signed_requests: None,
        composites: vec![],
        response_cache: vec![],
    }
}

pub(crate) fn token(patch: Value) -> String {
    let mut claims = json!({
        "sub": "u1", "iss": "tickettoken", "aud": "tickettoken-platform", "type": "access",
        "tenant_id": "t1", "role": "venue-manager", "venues": ["v1", "v2"], "exp": NOW + 900, "jti": "j1"
    });
    for (k, v) in patch.as_object().unwrap() {
        claims[k] = v.clone();
    }
    encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

pub(crate) struct Harness {
    pub(crate) policy: Policy,
    pub(crate) state: FilterState,
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with(config())
    }

    pub(crate) fn with(config: FilterConfig) -> Self {
        Self {
            policy: Policy::compile(&config).unwrap(),
            state: FilterState { cache: TokenCache::new(16), revocations: RevocationList::default(), key_reports: Default::default() },
        }
    }

    pub(crate) fn run(&mut self, method: &'static str, path: &'static str, headers: &[(&str, &str)]) -> Outcome<'static> {
        // Leaked so the decision can borrow from them for the rest of the test.
        let headers: &'static [(&'static str, &'static str)] = Box::leak(
            headers.iter().map(|(n, v)| (&*Box::leak((*n).into()), &*Box::leak((*v).into()))).collect::<Vec<_>>().into_boxed_slice(),
        );
        decide(&self.policy, &RequestView { method, path, headers }, NOW, &mut self.state)
    }
}

pub(crate) fn denial(outcome: &Outcome) -> (u16, &'static str) {
    match &outcome.decision {
        Decision::Deny(d) => (d.status, d.code),
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn forwarded(outcome: &Outcome) -> (Vec<String>, Vec<(&'static str, String)>) {
    match &outcome.decision {
        Decision::Forward { remove, .. } => {
            (remove.iter().map(|s| (*s).to_owned()).collect(), outcome.decision.headers_to_set())
        }
        other => panic!("expected forward, got {other:?}"),
    }
}

pub(crate) fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[test]
fn an_authenticated_request_gets_exactly_the_tokens_identity() {
    let mut h = Harness::new();
    let auth = bearer(&token(json!({})));
    let out = h.run("GET", "/api/v1/events/1", &[
        ("authorization", &auth),
        ("x-tenant-id", "evil"),
        ("x-tenant-id", "evil2"),
        ("x-user-role", "admin"),
        ("x-internal-key", "k"),
        ("x-echo-status", "200"),
        ("cookie", "c=1"),
    ]);
    let (remove, set) = forwarded(&out);
    assert_eq!(
        set,
        vec![
            ("x-tenant-id", "t1".to_owned()),
            ("x-tenant-source", "jwt".to_owned()),
            ("x-user-id", "u1".to_owned()),
            ("x-user-role", "venue-manager".to_owned()),
            ("x-user-permissions", "events:create,events:update,events:delete,tickets:view,tickets:validate,reports:view,reports:export".to_owned()),
            ("x-venue-ids", "v1,v2".to_owned()),
        ]
    );
    assert_eq!(remove, vec!["x-internal-key".to_owned(), "cookie".to_owned()], "set headers replace client copies");
    assert!(out.observed.authenticated);
    assert_eq!(out.observed.cache_hit, Some(false));
}

#[test]
fn spoofed_identity_headers_are_replaced_when_set_and_removed_when_not() {
    let mut h = Harness::new();
    // No venues claim and no signing key: x-venue-ids and the statement are not set, so a
    // client's copies must be removed; x-tenant-id is set, so it is replaced, not removed.
    let auth = bearer(&token(json!({"venues": null})));
    let out = h.run("GET", "/api/v1/events/1", &[
        ("authorization", &auth),
        ("x-tenant-id", "evil"),
        ("x-venue-ids", "v9"),
        ("x-stagedoor-identity", "forged"),
    ]);
    let Decision::Forward { remove, sent, .. } = &out.decision else { panic!("{:?}", out.decision) };
    assert_eq!(remove, &vec!["x-venue-ids", "x-stagedoor-identity"]);
    assert!(sent.contains("x-tenant-id") && sent.contains("x-venue-ids") && !sent.contains("x-user-id"));
    // Nothing spoofed: nothing to remove, and every identity header can simply be added.
    let out = h.run("GET", "/api/v1/events/1", &[("authorization", &auth)]);
    let Decision::Forward { remove, sent, .. } = &out.decision else { panic!() };
    assert!(remove.is_empty() && sent.is_empty());
}

#[test]
fn public_paths_assert_no_identity_and_strip_spoofed_ones() {
    let mut h = Harness::new();
    let out = h.run("POST", "/api/v1/auth/login?next=/api/v1/events", &[("x-tenant-id", "evil"), ("x-user-id", "u9")]);
    let (remove, set) = forwarded(&out);
    assert!(set.is_empty());
    assert_eq!(remove, vec!["x-tenant-id".to_owned(), "x-user-id".to_owned()]);
    assert_eq!(denial(&h.run("POST", "/api/v1/auth/login-admin", &[])), (401, "TOKEN_MISSING"));
    assert_eq!(denial(&h.run("POST", "/api/v1/auth/loginx", &[])), (401, "TOKEN_MISSING"));
    assert_eq!(denial(&h.run("GET", "/api/v1/auth/public", &[])), (401, "TOKEN_MISSING"));
    assert!(matches!(h.run("GET", "/api/v1/auth/public/x", &[]).decision, Decision::Forward { .. }));
    // The query never makes a path public.
    assert_eq!(denial(&h.run("GET", "/api/v1/events?/api/v1/auth/login", &[])), (401, "TOKEN_MISSING"));
}

#[test]
fn token_failures_are_401_with_their_code() {
    let mut h = Harness::new();
    assert_eq!(denial(&h.run("GET", "/api/v1/events", &[])), (401, "TOKEN_MISSING"));
    let a = bearer(&token(json!({"exp": NOW - 100})));
    assert_eq!(denial(&h.run("GET", "/api/v1/events", &[("authorization", &a)])), (401, "TOKEN_EXPIRED"));
    let a = bearer(&token(json!({"tenant_id": ""})));
    assert_eq!(denial(&h.run("GET", "/api/v1/events", &[("authorization", &a)])), (401, "TOKEN_MISSING_TENANT"));
    let a = bearer(&token(json!({"role": "superuser"})));
    assert_eq!(denial(&h.run("GET", "/api/v1/events", &[("authorization", &a)])), (401, "TOKEN_UNKNOWN_ROLE"));
    let good = bearer(&token(json!({})));
    let two = [("authorization", good.as_str()), ("authorization", good.as_str())];
    assert_eq!(denial(&h.run("GET", "/api/v1/events", &two)), (401, "TOKEN_MALFORMED"));
    let out = h.run("GET", "/api/v1/events", &[("authorization", "Bearer nope")]);
    assert_eq!(out.observed.token_error, Some(TokenError::Malformed("a JWT has exactly three parts")));
}

#[test]
fn rules_require_their_permission() {
    let mut h = Harness::new();
    let manager = bearer(&token(json!({})));
    assert!(matches!(h.run("POST", "/api/v1/events", &[("authorization", &manager)]).decision, Decision::Forward { .. }));
    let door = bearer(&token(json!({"role": "door-staff", "jti": "d"})));
    let out = h.run("POST", "/api/v1/events", &[("authorization", &door)]);
    assert_eq!(denial(&out), (403, "INSUFFICIENT_PERMISSIONS"));
    let Decision::Deny(d) = &out.decision else { panic!() };
    assert_eq!(d.message, "Insufficient permissions: events:create required");
    assert!(out.observed.rbac_denied);
    assert!(matches!(h.run("POST", "/api/v1/events/validate", &[("authorization", &door)]).decision, Decision::Forward { .. }));
    // A route without a rule needs authentication only.
    assert!(matches!(h.run("DELETE", "/api/v1/events/9", &[("authorization", &door)]).decision, Decision::Forward { .. }));
    // The permissions claim replaces the role's defaults.
    let narrowed = bearer(&token(json!({"permissions": ["reports:view"], "jti": "n"})));
    assert_eq!(denial(&h.run("POST", "/api/v1/events", &[("authorization", &narrowed)])), (403, "INSUFFICIENT_PERMISSIONS"));
}

#[test]
fn venue_scoped_roles_act_only_on_their_venues() {
    let mut h = Harness::new();
    let manager = bearer(&token(json!({})));
    let ok = h.run("POST", "/api/v1/venues/v2/events", &[("authorization", &manager)]);
    assert!(matches!(ok.decision, Decision::Forward { .. }));
    assert_eq!(denial(&h.run("POST", "/api/v1/venues/v3/events", &[("authorization", &manager)])), (403, "VENUE_ACCESS_DENIED"));
    assert_eq!(
        denial(&h.run("GET", "/api/v1/events/1", &[("authorization", &manager), ("x-venue-id", "v9")])),
        (403, "VENUE_ACCESS_DENIED")
    );
    assert_eq!(
        denial(&h.run("POST", "/api/v1/venues/v1/events", &[("authorization", &manager), ("x-venue-id", "v9")])),
        (403, "VENUE_ACCESS_DENIED"),
        "every venue the request names must be the caller's"
    );
    let no_claim = bearer(&token(json!({"venues": null, "jti": "nc"})));
    assert_eq!(denial(&h.run("POST", "/api/v1/venues/v1/events", &[("authorization", &no_claim)])), (403, "VENUE_ACCESS_DENIED"));
    let admin = bearer(&token(json!({"role": "admin", "venues": null, "jti": "a"})));
    assert!(matches!(h.run("POST", "/api/v1/venues/v9/events", &[("authorization", &admin)]).decision, Decision::Forward { .. }));
}

#[test]
fn own_permissions_follow_the_user_id_param() {
    let mut h = Harness::new();
    let customer = bearer(&token(json!({"role": "customer", "sub": "u7", "venues": null, "jti": "c"})));
    assert!(matches!(
        h.run("GET", "/api/v1/events/users/u7/tickets", &[("authorization", &customer)]).decision,
        Decision::Forward { .. }
    ));
    assert_eq!(
        denial(&h.run("GET", "/api/v1/events/users/u8/tickets", &[("authorization", &customer)])),
        (403, "INSUFFICIENT_PERMISSIONS")
    );
}

#[test]
fn the_cache_serves_repeats_and_still_honours_exp_and_revocation() {
    let mut h = Harness::new();
    let auth = bearer(&token(json!({"exp": NOW + 10})));
    assert_eq!(h.run("GET", "/api/v1/events", &[("authorization", &auth)]).observed.cache_hit, Some(false));
    assert_eq!(h.run("GET", "/api/v1/events", &[("authorization", &auth)]).observed.cache_hit, Some(true));
    let headers = [("authorization", auth.as_str())];
    let path = "/api/v1/events";
    let out = decide(&h.policy, &RequestView { method: "GET", path, headers: &headers }, NOW + 41, &mut h.state);
    assert_eq!(denial(&out), (401, "TOKEN_EXPIRED"));

    let auth = bearer(&token(json!({"jti": "rev-me"})));
    assert!(matches!(h.run("GET", path, &[("authorization", &auth)]).decision, Decision::Forward { .. }));
    h.state.revocations.apply(RevocationUpdate { cursor: 1, full: false, revoked: vec!["rev-me".into()] });
    let out = h.run("GET", path, &[("authorization", &auth)]);
    assert_eq!(out.observed.cache_hit, Some(true));
    assert_eq!(denial(&out), (401, "TOKEN_REVOKED"));
}

#[test]
fn a_revoked_family_refuses_every_access_token_minted_from_it_cached_or_not() {
    let mut h = Harness::new();
    let path = "/api/v1/events";
    let cached = bearer(&token(json!({"jti": "a-1", "fid": "fam1"})));
    let fresh = bearer(&token(json!({"jti": "a-2", "fid": "fam1"})));
    let other = bearer(&token(json!({"jti": "a-3", "fid": "fam2"})));
    assert!(matches!(h.run("GET", path, &[("authorization", &cached)]).decision, Decision::Forward { .. }));
    h.state.revocations.apply(RevocationUpdate { cursor: 1, full: false, revoked: vec!["family:fam1".into()] });
    assert_eq!(denial(&h.run("GET", path, &[("authorization", &cached)])), (401, "TOKEN_REVOKED"));
    assert_eq!(denial(&h.run("GET", path, &[("authorization", &fresh)])), (401, "TOKEN_REVOKED"));
    assert!(matches!(h.run("GET", path, &[("authorization", &other)]).decision, Decision::Forward { .. }));
    let bad = bearer(&token(json!({"fid": ["fam1"]})));
    assert_eq!(denial(&h.run("GET", path, &[("authorization", &bad)])), (401, "TOKEN_INVALID_CLAIMS"));
}

#[test]
fn a_refresh_token_signed_with_an_access_key_is_still_not_an_access_token() {
    let mut h = Harness::new();
    let refresh = bearer(&token(json!({"type": "refresh", "aud": "tickettoken-platform:refresh", "fid": "f"})));
    assert_eq!(denial(&h.run("GET", "/api/v1/events", &[("authorization", &refresh)])), (401, "TOKEN_WRONG_AUDIENCE"));
    let refresh_typed = bearer(&token(json!({"type": "refresh", "fid": "f"})));
    assert_eq!(denial(&h.run("GET", "/api/v1/events", &[("authorization", &refresh_typed)])), (401, "TOKEN_WRONG_TYPE"));
}

#[test]
fn a_cached_token_is_timed_by_the_coarse_clock_unless_its_expiry_is_inside_the_slack() {
    let mut h = Harness::new();
    let path = "/api/v1/events";
    let long = bearer(&token(json!({"exp": NOW + 900, "jti": "long"})));
    let short = bearer(&token(json!({"exp": NOW + 20, "jti": "short"})));
    for auth in [&long, &short] {
        assert!(matches!(h.run("GET", path, &[("authorization", auth)]).decision, Decision::Forward { .. }));
    }
    let asked = std::cell::Cell::new(0);
    // Coarse time NOW + 49, up to 5 s behind; the true time is NOW + 52. With the 30 s
    // leeway the short token is good until NOW + 50: expired by the true time, not by the
    // coarse one.
    let mut host = || {
        asked.set(asked.get() + 1);
        NOW + 52
    };
    let mut clock = Clock::new(NOW + 49, 5, &mut host);
    let headers = [("authorization", long.as_str())];
    let out = decide_at(&h.policy, &RequestView { method: "GET", path, headers: &headers }, &mut clock, &mut h.state);
    assert!(matches!(out.decision, Decision::Forward { .. }));
    assert_eq!(asked.get(), 0, "nothing near a boundary: no host call");
    let mut clock = Clock::new(NOW + 49, 5, &mut host);
    let headers = [("authorization", short.as_str())];
    let out = decide_at(&h.policy, &RequestView { method: "GET", path, headers: &headers }, &mut clock, &mut h.state);
    assert_eq!(denial(&out), (401, "TOKEN_EXPIRED"), "decided at the true time");
    assert_eq!(asked.get(), 1);
}

#[test]
fn the_identity_statement_is_signed_when_a_key_is_configured() {
    let key = "identity-key-identity-key-identity-key";
    let mut h = Harness::with(FilterConfig { identity_signing_key: Some(key.into()), ..config() });
    let auth = bearer(&token(json!({})));
    let (_, set) = forwarded(&h.run("GET", "/api/v1/events", &[("authorization", &auth)]));
    let (_, statement) = set.iter().find(|(n, _)| *n == "x-stagedoor-identity").unwrap();
    let json = crate::identity::verify_statement(key.as_bytes(), statement).unwrap();
    assert_eq!(json["tenant_id"], "t1");
    assert_eq!(json["ts"], NOW);
    assert!(crate::identity::verify_statement(b"other-key-other-key-other-key-00", statement).is_none());

    // Reused while fresh (no HMAC per request), re-signed once stale.
    let again = |h: &mut Harness, now: i64| {
        let headers = [("authorization", auth.as_str())];
        let out = decide(&h.policy, &RequestView { method: "GET", path: "/api/v1/events", headers: &headers }, now, &mut h.state);
        let (_, set) = forwarded(&out);
        set.into_iter().find(|(n, _)| *n == "x-stagedoor-identity").unwrap().1
    };
    assert_eq!(&again(&mut h, NOW + 5), statement);
    let later = again(&mut h, NOW + 11);
    assert_eq!(crate::identity::verify_statement(key.as_bytes(), &later).unwrap()["ts"], NOW + 11);
}

#[test]
fn unrouted_paths_pass_for_envoys_404_but_lose_identity_headers() {
    let mut h = Harness::new();
    let (remove, set) = forwarded(&h.run("GET", "/nope", &[("x-tenant-id", "evil"), ("cookie", "x")]));
    assert!(set.is_empty());
    assert_eq!(remove, vec!["x-tenant-id".to_owned()]);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever a client sends, a forwarded request never keeps a client identity header:
        /// each is either removed or replaced by the token's value.
        #[test]
        fn identity_headers_are_always_stripped_or_replaced(
            names in proptest::collection::vec(prop::sample::select(vec![
                "x-tenant-id", "x-user-id", "x-user-role", "x-venue-ids", "x-user-permissions",
                "x-tenant-source", "x-internal-a", "x-stagedoor-identity", "accept", "x-custom-z",
            ]), 0..8),
            path in prop::sample::select(vec!["/api/v1/events/1", "/api/v1/auth/login", "/nope", "/api/v1/auth/public/a"]),
            with_token in any::<bool>(),
        ) {
            let mut h = Harness::new();
            let auth = bearer(&token(json!({})));
            let mut headers: Vec<(&str, &str)> = names.iter().map(|n| (*n, "spoof")).collect();
            if with_token { headers.push(("authorization", &auth)); }
            let out = h.run("GET", path, &headers);
            let set = out.decision.headers_to_set();
            if let Decision::Forward { remove, .. } = &out.decision {
                for name in &names {
                    if crate::headers::is_blocked(name) {
                        let replaced = set.iter().any(|(s, v)| s == name && v != "spoof");
                        prop_assert!(remove.iter().any(|r| r == name) || replaced, "{name} survived");
                    }
                }
            }
        }
    }
}

#[test]
fn a_request_id_that_is_not_a_plain_token_is_replaced() {
    let mut h = Harness::new();
    let out = h.run("GET", "/nope", &[("x-request-id", "a\"b,\"evil\":\"1")]);
    assert_eq!(out.request_id, RequestId::Replaced("abevil:1".into()));
    let out = h.run("GET", "/api/v1/events", &[("x-request-id", "a\"b")]);
    assert_eq!(out.request_id.as_str(), "ab", "a refusal's body gets the plain id too");
    let out = h.run("GET", "/nope", &[("x-request-id", "5f1c7a9e-3b7c-4a59-9b1f-2f0f3f1b7a11")]);
    assert_eq!(out.request_id, RequestId::Kept("5f1c7a9e-3b7c-4a59-9b1f-2f0f3f1b7a11"), "Envoy's own ids pass untouched");
    assert_eq!(plain_request_id("\"\""), "invalid");
}

#[test]
fn headers_that_are_not_utf8_fail_closed() {
    // How crate::header_map hands over bytes that are not UTF-8.
    let mut h = Harness::new();
    let manager = bearer(&token(json!({})));
    let (remove, _) = forwarded(&h.run("GET", "/api/v1/events", &[("authorization", &manager), ("x-custom-a", NOT_UTF8)]));
    assert!(remove.is_empty(), "an allowed header with an unreadable value passes untouched");
    assert_eq!(denial(&h.run("GET", "/api/v1/events", &[("authorization", NOT_UTF8)])), (401, "TOKEN_MALFORMED"));
    assert_eq!(
        denial(&h.run("GET", "/api/v1/events/1", &[("authorization", &manager), ("x-venue-id", NOT_UTF8)])),
        (403, "VENUE_ACCESS_DENIED")
    );
    assert_eq!(h.run("GET", "/nope", &[("x-request-id", NOT_UTF8)]).request_id, RequestId::Replaced("invalid".into()));
    let out = h.run("GET", "/api/v1/public/x", &[(NOT_UTF8, "v"), ("x-request-id", "r1")]);
    assert_eq!(denial(&out), (400, "MALFORMED_HEADER"), "a name the policy cannot read is one it cannot strip");
    assert_eq!(out.request_id.as_str(), "r1");
    // Envoy routes on the real bytes: a path or method the policy cannot read must not pass
    // as "no service here" or "no rule for this method".
    assert_eq!(denial(&h.run("GET", NOT_UTF8, &[])), (400, "MALFORMED_HEADER"));
    assert_eq!(denial(&h.run(NOT_UTF8, "/api/v1/events", &[("authorization", &manager)])), (400, "MALFORMED_HEADER"));
}

#[test]
fn a_webhook_path_asks_for_its_signature_to_be_checked() {
    let mut h = Harness::new();
    let Decision::Forward { webhook, .. } = h.run("POST", "/api/v1/auth/public/stripe", &[]).decision else { panic!() };
    assert_eq!(webhook, Some(0));
    let Decision::Forward { webhook, .. } = h.run("POST", "/api/v1/auth/public/other", &[]).decision else { panic!() };
    assert_eq!(webhook, None);
}
