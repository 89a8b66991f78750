//! Every form of a request a backend may serve as the same resource gets the decision of
//! its plain form, or is refused: trailing slashes, HEAD for GET, case, `;params`, percent
//! escapes, and what Envoy's normalization would have removed (`//`, dot segments).

use proptest::prelude::*;
use serde_json::json;

use super::tests::{bearer, denial, rule, token, Harness};
use super::*;
use crate::config::{FilterConfig, ServiceConfig, Unmatched};

/// The shipped registry's services with rules (registry/tickettoken.yaml).
fn shipped_rules(unmatched: Unmatched) -> FilterConfig {
    let service = |name: &str, prefix: &str, public: &[&str], rules: Vec<crate::config::RuleConfig>| ServiceConfig {
        name: name.into(),
        prefixes: vec![prefix.into()],
        public_paths: public.iter().map(|p| (*p).to_owned()).collect(),
        rules,
        request_headers: Default::default(),
        unmatched,
        validation: vec![],
        require_signatures: false,
        signed_routes: vec![],
        rbac_shadow: false,
    };
    let mut config = super::tests::config();
    config.services = vec![
        service("auth", "/api/v1/auth", &["/api/v1/auth/login", "/api/v1/auth/refresh"], vec![]),
        service("venue", "/api/v1/venues", &[], vec![
            rule("POST", "/api/v1/venues/{venueId}/events", "events:create"),
            rule("PUT", "/api/v1/venues/{venueId}/events/{eventId}", "events:update"),
            rule("DELETE", "/api/v1/venues/{venueId}/events/{eventId}", "events:delete"),
            rule("GET", "/api/v1/venues/{venueId}/reports", "reports:view"),
        ]),
        service("event", "/api/v1/events", &[], vec![
            rule("POST", "/api/v1/events", "events:create"),
            rule("PUT", "/api/v1/events/{eventId}", "events:update"),
            rule("DELETE", "/api/v1/events/{eventId}", "events:delete"),
        ]),
        service("ticket", "/api/v1/tickets", &[], vec![
            rule("POST", "/api/v1/tickets/validate", "tickets:validate"),
            rule("POST", "/api/v1/tickets/purchase", "tickets:purchase"),
            rule("GET", "/api/v1/tickets/users/{userId}", "tickets:view"),
        ]),
        service("payment", "/api/v1/payments", &["/api/v1/payments/public/*"], vec![
            rule("POST", "/api/v1/payments/process", "payments:process"),
            rule("GET", "/api/v1/payments/users/{userId}", "payments:view-own"),
        ]),
    ];
    config.webhooks = vec![];
    config
}

const RULES: &[(&str, &str)] = &[
    ("POST", "/api/v1/venues/{venueId}/events"),
    ("PUT", "/api/v1/venues/{venueId}/events/{eventId}"),
    ("DELETE", "/api/v1/venues/{venueId}/events/{eventId}"),
    ("GET", "/api/v1/venues/{venueId}/reports"),
    ("POST", "/api/v1/events"),
    ("PUT", "/api/v1/events/{eventId}"),
    ("DELETE", "/api/v1/events/{eventId}"),
    ("POST", "/api/v1/tickets/validate"),
    ("POST", "/api/v1/tickets/purchase"),
    ("GET", "/api/v1/tickets/users/{userId}"),
    ("POST", "/api/v1/payments/process"),
    ("GET", "/api/v1/payments/users/{userId}"),
    ("GET", "/api/v1/auth/login"),
    ("GET", "/api/v1/payments/public/x"),
];

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The decision, as what a test can compare: forwarded (with or without an identity), or
/// the denial's status and code. A path no service owns is Envoy's 404 (its route table
/// matches prefixes case-sensitively, as `Policy::service_for` does).
fn verdict(h: &mut Harness, method: &str, path: &str, auth: &str) -> Result<bool, (u16, &'static str)> {
    if h.policy.service_for(crate::path::strip_query(path)).is_none() {
        return Err((404, "NO_ROUTE"));
    }
    let headers: &[(&str, &str)] = if auth.is_empty() { &[] } else { &[("authorization", auth)] };
    match h.run(leak(method.into()), leak(path.into()), headers).decision {
        Decision::Forward { identity, .. } => Ok(identity.is_some()),
        Decision::Deny(d) => Err((d.status, d.code)),
    }
}

/// One way a client can write a path differently, as a backend may still read it.
#[derive(Debug, Clone, Copy)]
enum Variant {
    TrailingSlash,
    Upper(usize),
    Param(usize),
    EncodeUnreserved(usize),
    DoubleSlash(usize),
    DotSegment(usize),
    DotDot(usize),
    Backslash,
}

impl Variant {
    fn apply(self, path: &str) -> String {
        let mut segments: Vec<String> = path[1..].split('/').map(str::to_owned).collect();
        let n = segments.len();
        match self {
            Variant::TrailingSlash => return format!("{path}/"),
            Variant::Backslash => return format!("{path}\\"),
            Variant::Upper(i) => segments[i % n] = segments[i % n].to_ascii_uppercase(),
            Variant::Param(i) => segments[i % n].push_str(";jsessionid=x"),
            Variant::EncodeUnreserved(i) => {
                // A segment that starts with an unreserved character (a trailing slash from an
                // earlier variant leaves an empty one; an earlier encoding a '%').
                let unreserved = |s: &String| s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
                if let Some(at) = (0..n).map(|k| (i + k) % n).find(|&at| unreserved(&segments[at])) {
                    let s = &segments[at];
                    segments[at] = format!("%{:02X}{}", s.as_bytes()[0], &s[1..]);
                }
            }
            Variant::DoubleSlash(i) => segments.insert(i % n, String::new()),
            Variant::DotSegment(i) => segments.insert(i % n, ".".into()),
            Variant::DotDot(i) => {
                segments.insert(i % n, "..".into());
                segments.insert(i % n, "x".into());
            }
        }
        format!("/{}", segments.join("/"))
    }
}

fn variant() -> impl Strategy<Value = Variant> {
    prop_oneof![
        Just(Variant::TrailingSlash),
        Just(Variant::Backslash),
        (0..6usize).prop_map(Variant::Upper),
        (0..6usize).prop_map(Variant::Param),
        (0..6usize).prop_map(Variant::EncodeUnreserved),
        (0..6usize).prop_map(Variant::DoubleSlash),
        (0..6usize).prop_map(Variant::DotSegment),
        (0..6usize).prop_map(Variant::DotDot),
    ]
}

fn caller() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(json!({"sub": "7", "role": "customer", "venues": null})),
        Just(json!({"sub": "7", "role": "venue-manager", "venues": ["101"]})),
        Just(json!({"sub": "8", "role": "box-office", "venues": ["102"]})),
        Just(json!({"sub": "7", "role": "door-staff", "venues": ["101", "102"]})),
        Just(json!({"sub": "a", "role": "admin", "venues": null})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A variant passes only where its plain form passes; a variant that names the same
    /// resource gets the plain form's decision exactly; HEAD is judged as GET.
    #[test]
    fn every_variant_of_a_path_gets_its_plain_forms_decision_or_is_refused(
        (method, pattern) in proptest::sample::select(RULES),
        // Params without case (a case variant of a param is another id, and refused).
        venue in proptest::sample::select(vec!["101", "102"]),
        user in proptest::sample::select(vec!["7", "8"]),
        claims in caller(),
        variants in proptest::collection::vec(variant(), 1..3),
        deny_unmatched in any::<bool>(),
        head in any::<bool>(),
    ) {
        let unmatched = if deny_unmatched { Unmatched::Deny } else { Unmatched::Authenticated };
        let mut h = Harness::with(shipped_rules(unmatched));
        let auth = bearer(&token(claims));
        let plain = pattern.replace("{venueId}", venue).replace("{userId}", user).replace("{eventId}", "99");
        let method = if head && method == "GET" { "HEAD" } else { method };
        let expected = verdict(&mut h, if method == "HEAD" { "GET" } else { method }, &plain, &auth);
        prop_assert_eq!(&verdict(&mut h, method, &plain, &auth), &expected, "HEAD is judged as GET");
        let mut path = plain.clone();
        for v in &variants {
            path = v.apply(&path);
        }
        let got = verdict(&mut h, method, &path, &auth);
        if got == Err((404, "NO_ROUTE")) {
            // Envoy's route table refuses it (a case or `;` variant of the prefix itself).
            return Ok(());
        }
        prop_assert!(strictness(&got) >= strictness(&expected), "{} {} -> {}: {:?} is looser than {:?}", method, plain, path, got, expected);
        let exact = |v: &Variant| matches!(v, Variant::TrailingSlash | Variant::EncodeUnreserved(_));
        let same_resource = |v: &Variant| exact(v) || matches!(v, Variant::Upper(_));
        // Public paths keep their case (a case variant of one needs a token); every other
        // decision holds for case variants exactly.
        if variants.iter().all(exact) || (variants.iter().all(same_resource) && expected != Ok(false)) {
            prop_assert_eq!(&got, &expected, "{} {} -> {}", method, plain, path);
        }
    }
}

/// Public (no token needed) < authenticated and allowed < refused.
fn strictness(verdict: &Result<bool, (u16, &'static str)>) -> u8 {
    match verdict {
        Ok(false) => 0,
        Ok(true) => 1,
        Err(_) => 2,
    }
}

#[test]
fn the_reported_bypasses_are_closed() {
    let mut h = Harness::with(shipped_rules(Unmatched::Authenticated));
    let customer = bearer(&token(json!({"sub": "u1", "role": "customer", "venues": null})));
    let manager_v1 = bearer(&token(json!({"sub": "u1", "role": "venue-manager", "venues": ["v1"]})));
    let forbidden = Err((403, "INSUFFICIENT_PERMISSIONS"));
    for path in ["/api/v1/events/", "/api/v1/events//"] {
        assert_eq!(verdict(&mut h, "POST", path, &customer), forbidden, "POST {path}");
    }
    // Envoy's routes match prefixes case-sensitively and on whole segments: these never
    // reach the event service.
    for path in ["/api/v1/EVENTS", "/API/v1/events", "/api/v1/events;x"] {
        assert_eq!(verdict(&mut h, "POST", path, &customer), Err((404, "NO_ROUTE")), "POST {path}");
    }
    for path in ["/api/v1/events/.", "/api/v1/venues/v1/events\\", "/api/v1/events/%2e"] {
        assert_eq!(verdict(&mut h, "POST", path, &customer).map_err(|e| e.0), Err(400), "POST {path}");
    }
    let venue = Err((403, "VENUE_ACCESS_DENIED"));
    for path in ["/api/v1/venues/v2/reports", "/api/v1/venues/v2/reports/", "/api/v1/venues/v2/REPORTS", "/api/v1/venues/v2/reports;a=b"] {
        assert_eq!(verdict(&mut h, "HEAD", path, &manager_v1), venue, "HEAD {path}");
        assert_eq!(verdict(&mut h, "GET", path, &manager_v1), venue, "GET {path}");
    }
    for path in ["/api/v1/venues/v2/reports%20", "/api/v1/venues/v2/reports%3F", "/api/v1/venues/v2/reports%3B"] {
        assert_eq!(verdict(&mut h, "GET", path, &manager_v1).map_err(|e| e.0), Err(400), "GET {path}");
    }
    assert_eq!(verdict(&mut h, "POST", "/api/v1/venues/v2/EVENTS", &manager_v1), venue);
    assert_eq!(verdict(&mut h, "POST", "/api/v1/venues/v1/events;x", &customer), forbidden);
    assert_eq!(verdict(&mut h, "POST", "/api/v1/venues/v1;x/events", &manager_v1), venue, "the as-sent venue is v1;x");
    assert_eq!(verdict(&mut h, "HEAD", "/api/v1/tickets/users/u2", &customer), forbidden);
    assert_eq!(verdict(&mut h, "GET", "/api/v1/tickets/users/u2/", &customer), forbidden, "-own with a trailing slash");
    assert_eq!(verdict(&mut h, "GET", "/api/v1/tickets/users/U2", &customer), forbidden, "-own owners compare exactly");
    assert_eq!(verdict(&mut h, "GET", "/api/v1/tickets/users/u1/", &customer), Ok(true));
    assert_eq!(verdict(&mut h, "post", "/api/v1/events", &customer), Err((400, "INVALID_METHOD")));
    assert_eq!(verdict(&mut h, "Post", "/api/v1/auth/login", &customer), Err((400, "INVALID_METHOD")));
}

#[test]
fn a_public_path_is_public_only_where_every_reading_is() {
    let mut h = Harness::with(shipped_rules(Unmatched::Authenticated));
    assert_eq!(verdict(&mut h, "POST", "/api/v1/auth/login/", ""), Ok(false), "a trailing slash is the same path");
    assert_eq!(verdict(&mut h, "POST", "/api/v1/auth/login;x", "").map_err(|e| e.0), Err(401), "the as-sent reading is not public");
    assert_eq!(verdict(&mut h, "POST", "/api/v1/auth/LOGIN", "").map_err(|e| e.0), Err(401), "public paths keep their case");
    assert_eq!(verdict(&mut h, "GET", "/api/v1/payments/public/a;x", ""), Ok(false), "both readings are below the public prefix");
    assert_eq!(verdict(&mut h, "GET", "/api/v1/payments/public/;x", "").map_err(|e| e.0), Err(400));
}

#[test]
fn unmatched_deny_refuses_what_no_rule_covers() {
    let mut h = Harness::with(shipped_rules(Unmatched::Deny));
    let admin = bearer(&token(json!({"sub": "a", "role": "admin", "venues": null})));
    assert_eq!(verdict(&mut h, "GET", "/api/v1/events/e1", &admin), Err((403, "ROUTE_NOT_ALLOWED")));
    assert_eq!(verdict(&mut h, "POST", "/api/v1/events", &admin), Ok(true));
    assert_eq!(verdict(&mut h, "GET", "/api/v1/events/e1", ""), Err((401, "TOKEN_MISSING")), "authentication comes first");
    assert_eq!(verdict(&mut h, "POST", "/api/v1/auth/login", ""), Ok(false), "public paths need no rule");
    let mut open = Harness::with(shipped_rules(Unmatched::Authenticated));
    assert_eq!(verdict(&mut open, "GET", "/api/v1/events/e1", &admin), Ok(true));
}

#[test]
fn webhook_signatures_are_checked_on_every_form_of_the_webhook_path() {
    let mut h = Harness::new();
    for path in ["/api/v1/auth/public/stripe", "/api/v1/auth/public/stripe/", "/api/v1/auth/public/STRIPE", "/api/v1/auth/public/stripe;x"] {
        let out = h.run("POST", leak(path.into()), &[]);
        match out.decision {
            Decision::Forward { webhook, .. } => assert_eq!(webhook, Some(0), "{path}"),
            Decision::Deny(d) => panic!("{path}: {d:?}"),
        }
    }
    let _ = denial;
}
