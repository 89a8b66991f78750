//! The whole per-request decision never panics and never forwards a client identity header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stagedoor_filter_core::cache::TokenCache;
use stagedoor_filter_core::config::FilterConfig;
use stagedoor_filter_core::revocation::RevocationList;
use stagedoor_filter_core::{decide, Decision, FilterState, Policy, RequestView};

fuzz_target!(|input: (&str, &str, Vec<(String, String)>)| {
    let (method, path, headers) = input;
    // Built from JSON, as the filter receives it, so a field added to the config (with its
    // serde default) does not break this target.
    let config: FilterConfig = serde_json::from_value(serde_json::json!({
        "config_version": "fuzz",
        "services": [{
            "name": "svc",
            "prefixes": ["/api"],
            "public_paths": ["/api/public/*", "/api/login"],
            "rules": [{"method": "GET", "path": "/api/v/{venueId}/r", "permission": "reports:view"}],
            "unmatched": "deny",
        }],
        "auth": {
            "issuer": "i",
            "audience": "a",
            "leeway_secs": 30,
            "keys": [{"algorithms": ["HS256"], "secret": "fuzz-secret-fuzz-secret-fuzz-secret-0"}],
        },
        "token_cache_entries": 8,
    }))
    .expect("config");
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
