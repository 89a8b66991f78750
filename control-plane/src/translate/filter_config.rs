//! Registry -> the wasm filter's config (the type shared with the filter).

use stagedoor_filter_core::config::{
    AuthConfig, FilterConfig, JwksConfig, KeyReportConfig, RevocationConfig, ServiceConfig, DEFAULT_LEEWAY_SECS,
    DEFAULT_TOKEN_CACHE_ENTRIES,
};

use stagedoor_filter_core::signature::{ReplayConfig, SignedRequestsConfig};
use crate::registry::token_endpoint::{LOGOUT_PATH, REFRESH_PATH};

use crate::registry::{Registry, ServiceSpec};

/// The config's version is a hash of its own content, not the registry's: an instance
/// change must not reload the filter in every Envoy.
pub fn filter_config(registry: &Registry, revocation: Option<RevocationConfig>) -> FilterConfig {
    with_services(global_filter_config(registry, revocation), registry.services.values().map(service_config).collect())
}

/// One service's part of the filter config: what the filter needs to judge its requests.
pub fn service_config(svc: &ServiceSpec) -> ServiceConfig {
    ServiceConfig {
        name: svc.name.clone(),
        prefixes: svc.routes.iter().map(|r| r.prefix.clone()).collect(),
        public_paths: svc.public_paths.clone(),
        rules: svc.rules.clone(),
        request_headers: svc.request_headers.clone(),
        unmatched: svc.unmatched,
        validation: svc.validation.clone(),
        require_signatures: svc.require_signatures,
        signed_routes: svc.signed_routes.clone(),
        rbac_shadow: svc.rbac_shadow,
    }
}

/// Everything of the filter config but the registry's services (the token endpoint's
/// service is a global one) and the version: what incremental translation compares to
/// know whether the filter config may be reused.
pub fn global_filter_config(registry: &Registry, revocation: Option<RevocationConfig>) -> FilterConfig {
    FilterConfig {
        config_version: String::new(),
        services: registry.token_endpoint.as_ref().map(|_| token_endpoint_service()).into_iter().collect(),
        auth: AuthConfig {
            issuer: registry.auth.issuer.clone(),
            audience: registry.auth.audience.clone(),
            leeway_secs: registry.auth.leeway_secs.unwrap_or(DEFAULT_LEEWAY_SECS),
            keys: registry.keys.clone(),
            jwks: jwks_config(registry, revocation.as_ref()),
        },
        roles: registry.roles.clone(),
        identity_signing_key: registry.identity_signing_key.clone(),
        revocation,
        token_cache_entries: DEFAULT_TOKEN_CACHE_ENTRIES,
        webhooks: registry.webhooks.clone(),
        signed_requests: registry.signed_requests.as_ref().map(|signed| SignedRequestsConfig {
            tolerance_secs: signed.tolerance_secs,
            keys: signed.keys.clone(),
            // The RateLimitService's cluster, which the translation adds for signed requests.
            replay: ReplayConfig { cluster: super::rate_limit_global::CLUSTER.to_owned(), timeout_ms: signed.replay_timeout_ms },
        }),
        composites: registry.composites.clone(),
        response_cache: registry.response_cache.clone(),
    }
}

/// The registry's services ahead of the global ones, and the version of the whole.
pub fn with_services(globals: FilterConfig, mut services: Vec<ServiceConfig>) -> FilterConfig {
    services.extend(globals.services);
    let mut config = FilterConfig { services, ..globals };
    config.config_version = crate::hash::short_hash(config.to_json().as_bytes());
    config
}

/// The JWKS issuers, and the control plane's HTTP side (which the revocation feed reaches
/// too) as where unknown kids are reported.
fn jwks_config(registry: &Registry, revocation: Option<&RevocationConfig>) -> Option<JwksConfig> {
    if registry.jwks.is_empty() {
        return None;
    }
    Some(JwksConfig {
        issuers: registry.jwks.iter().map(|s| s.issuer.clone()).collect(),
        report: revocation.map(|rev| KeyReportConfig {
            cluster: rev.cluster.clone(),
            authority: rev.authority.clone(),
            path: String::from(super::names::KEY_REPORT_PATH),
        }),
    })
}

/// The token endpoint's paths as the filter sees them: public, because the endpoint checks
/// the tokens itself (a logout repeated with its now revoked token answers the same), and
/// routed as Envoy routes them, so the filter and Envoy agree on what is whose.
fn token_endpoint_service() -> ServiceConfig {
    let paths = [REFRESH_PATH, LOGOUT_PATH];
    ServiceConfig {
        name: crate::translate::names::TOKEN_ENDPOINT_SERVICE.to_owned(),
        prefixes: paths.iter().map(|p| (*p).to_owned()).collect(),
        public_paths: paths.iter().flat_map(|p| [(*p).to_owned(), format!("{p}/*")]).collect(),
        rules: Vec::new(),
        request_headers: Default::default(),
        unmatched: Default::default(),
        validation: Vec::new(),
        require_signatures: false,
        signed_routes: Vec::new(),
        rbac_shadow: false,
    }
}
