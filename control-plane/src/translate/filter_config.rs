//! Registry -> the wasm filter's config (the type shared with the filter).

use stagedoor_filter_core::config::{
    AuthConfig, FilterConfig, RevocationConfig, ServiceConfig, DEFAULT_LEEWAY_SECS, DEFAULT_TOKEN_CACHE_ENTRIES,
};

use crate::registry::Registry;

/// The config's version is a hash of its own content, not the registry's: an instance
/// change must not reload the filter in every Envoy.
pub fn filter_config(registry: &Registry, revocation: Option<RevocationConfig>) -> FilterConfig {
    let mut config = FilterConfig {
        config_version: String::new(),
        services: registry
            .services
            .values()
            .map(|svc| ServiceConfig {
                name: svc.name.clone(),
                prefixes: svc.routes.iter().map(|r| r.prefix.clone()).collect(),
                public_paths: svc.public_paths.clone(),
                rules: svc.rules.clone(),
                request_headers: svc.request_headers.clone(),
                unmatched: svc.unmatched,
                validation: svc.validation.clone(),
            })
            .collect(),
        auth: AuthConfig {
            issuer: registry.auth.issuer.clone(),
            audience: registry.auth.audience.clone(),
            leeway_secs: registry.auth.leeway_secs.unwrap_or(DEFAULT_LEEWAY_SECS),
            keys: registry.keys.clone(),
        },
        roles: registry.roles.clone(),
        identity_signing_key: registry.identity_signing_key.clone(),
        revocation,
        token_cache_entries: DEFAULT_TOKEN_CACHE_ENTRIES,
        webhooks: registry.webhooks.clone(),
        composites: registry.composites.clone(),
        response_cache: registry.response_cache.clone(),
    };
    config.config_version = crate::hash::short_hash(config.to_json().as_bytes());
    config
}
