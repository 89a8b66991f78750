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

/// One service's part of the filter config, and its JSON as the whole config writes it:
/// the incremental translation keeps both, so a changed config's JSON is the services'
/// joined ([`config_json`]), not 10,000 services written again.
#[derive(Debug, PartialEq)]
pub struct ServicePart {
    pub config: ServiceConfig,
    pub json: String,
    /// The JSON's hash, which the config's version is made of ([`with_services`]).
    pub hash: String,
}

impl ServicePart {
    pub fn new(config: ServiceConfig) -> Self {
        // Serializing plain structs of strings cannot fail (as `FilterConfig::to_json`).
        let json = serde_json::to_string(&config).unwrap_or_default();
        let hash = crate::hash::short_hash(json.as_bytes());
        Self { config, json, hash }
    }
}

/// A filter config's JSON, and the version written in it.
pub struct ConfigJson {
    pub json: String,
    pub version: String,
}

/// What `with_services(globals, parts).to_json()` writes, made from the parts' JSON: the
/// config without services written once, the services' JSON spliced into its `services`
/// array, the version made of the parts' hashes (as [`with_services`] makes it).
pub fn config_json(globals: &FilterConfig, parts: &[&ServicePart]) -> ConfigJson {
    const HEAD: &str = r#"{"config_version":""#;
    const SERVICES: &str = r#"","services":["#;
    let skeleton = skeleton(globals);
    let Some(rest) = skeleton.strip_prefix(HEAD).and_then(|r| r.strip_prefix(SERVICES)) else {
        // Not the shape serde writes for the struct's field order: write it whole.
        let config = with_services(globals.clone(), parts.iter().map(|p| p.config.clone()).collect());
        return ConfigJson { json: config.to_json(), version: config.config_version };
    };
    let global_parts: Vec<ServicePart> = globals.services.iter().cloned().map(ServicePart::new).collect();
    let each = parts.iter().copied().chain(&global_parts);
    let version = version(&skeleton, each.clone().map(|p| p.hash.as_str()));
    let length = HEAD.len() + version.len() + SERVICES.len() + each.clone().map(|p| p.json.len() + 1).sum::<usize>() + rest.len();
    let mut json = String::with_capacity(length);
    json.push_str(HEAD);
    json.push_str(&version);
    json.push_str(SERVICES);
    for (i, part) in each.enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&part.json);
    }
    json.push_str(rest);
    ConfigJson { json, version }
}

/// The config's JSON with no version and no services.
fn skeleton(globals: &FilterConfig) -> String {
    FilterConfig { config_version: String::new(), services: Vec::new(), ..globals.clone() }.to_json()
}

/// A config's version: a hash of its content, made of the JSON of everything but its
/// services (`skeleton`) and each service's JSON hash, so a config of kept parts is
/// versioned without hashing its megabytes again.
fn version<'a>(skeleton: &str, service_hashes: impl IntoIterator<Item = &'a str>) -> String {
    let mut hashed = String::from(skeleton);
    for hash in service_hashes {
        hashed.push(',');
        hashed.push_str(hash);
    }
    crate::hash::short_hash(hashed.as_bytes())
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
    let skeleton = skeleton(&globals);
    services.extend(globals.services.iter().cloned());
    let hashes: Vec<String> =
        services.iter().map(|s| crate::hash::short_hash(serde_json::to_string(s).unwrap_or_default().as_bytes())).collect();
    let config_version = version(&skeleton, hashes.iter().map(String::as_str));
    FilterConfig { config_version, services, ..globals }
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
