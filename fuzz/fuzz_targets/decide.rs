//! The whole per-request decision never panics and never forwards a client identity header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stagedoor_filter_core::cache::TokenCache;
use stagedoor_filter_core::config::{AuthConfig, FilterConfig, HeaderPolicyConfig, KeyConfig, RuleConfig, ServiceConfig, Unmatched};
use stagedoor_filter_core::revocation::RevocationList;
use stagedoor_filter_core::{decide, Decision, FilterState, Policy, RequestView};

fuzz_target!(|input: (&str, &str, Vec<(String, String)>)| {
    let (method, path, headers) = input;
    let config = FilterConfig {
        config_version: "fuzz".into(),
        services: vec![ServiceConfig {
            name: "svc".into(),
            prefixes: vec!["/api".into()],
            public_paths: vec!["/api/public/*".into(), "/api/login".into()],
            rules: vec![RuleConfig { method: "GET".into(), path: "/api/v/{venueId}/r".into(), permission: "reports:view".into() }],
            request_headers: HeaderPolicyConfig::default(),
            unmatched: Unmatched::Deny,
        }],
        auth: AuthConfig {
            issuer: "i".into(),
            audience: "a".into(),
            leeway_secs: 30,
            keys: vec![KeyConfig {
                kid: None,
                algorithms: vec!["HS256".into()],
                secret: Some("fuzz-secret-fuzz-secret-fuzz-secret-0".into()),
                jwk: None,
                issuer: None,
            }],
            jwks: None,
        },
        roles: stagedoor_filter_core::defaults::roles(),
        identity_signing_key: None,
        revocation: None,
        token_cache_entries: 8,
        webhooks: vec![],
    };
    let policy = Policy::compile(&config).expect("policy");
    let mut state = FilterState { cache: TokenCache::new(8), revocations: RevocationList::default(), key_reports: Default::default() };
    let owned: Vec<(String, String)> = headers.into_iter().map(|(n, v)| (n.to_ascii_lowercase(), v)).collect();
    let headers: Vec<(&str, &str)> = owned.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let outcome = decide(&policy, &RequestView { method, path, headers: &headers }, 1_800_000_000, &mut state);
    if let Decision::Forward { remove, identity, .. } = &outcome.decision {
        assert!(identity.is_none(), "no token can verify here, so no identity is ever set");
        for (name, _) in &headers {
            if stagedoor_filter_core::headers::is_blocked(name) {
                assert!(remove.contains(name), "{name} would reach the upstream");
            }
        }
    }
});
