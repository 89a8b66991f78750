//! Registry -> the wasm filter's config (the type shared with the filter).

use stagedoor_filter_core::config::{
    AuthConfig, FilterConfig, JwksConfig, KeyReportConfig, RevocationConfig, ServiceConfig, DEFAULT_LEEWAY_SECS,
    DEFAULT_TOKEN_CACHE_ENTRIES,
};

use stagedoor_filter_core::signature::{ReplayConfig, SignedRequestsConfig};
use crate::registry::token_endpoint::{LOGOUT_PATH, REFRESH_PATH};

use super::joined::{Joined, Piece};
use crate::registry::{Registry, ServiceSpec};

/// The config's version is a hash of its own content, not the registry's: an instance
/// change must not reload the filter in every Envoy.
pub fn filter_config(registry: &Registry, revocation: Option<RevocationConfig>) -> FilterConfig {
    with_services(global_filter_config(registry, revocation), registry.services.values().map(|s| service_config(s)).collect())
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

/// The registry's services' parts of the filter config by name, joined as the config's
/// `services` array holds them (see [`super::joined`]).
pub type ServiceParts = Joined<String, ServicePart>;

impl Piece for ServicePart {
    const SEPARATOR: &'static [u8] = b",";
    fn bytes(&self) -> &[u8] {
        self.json.as_bytes()
    }
    fn hash(&self) -> &str {
        &self.hash
    }
}

/// What `with_services(globals, parts).to_json()` writes, made from the parts' JSON: the
/// config without services written once, the services' JSON spliced into its `services`
/// array, the version made of the parts' digest (as [`with_services`] makes it).
pub fn config_json(globals: &FilterConfig, parts: &mut ServiceParts) -> ConfigJson {
    const HEAD: &str = r#"{"config_version":""#;
    const SERVICES: &str = r#"","services":["#;
    let skeleton = skeleton(globals);
    let Some(rest) = skeleton.strip_prefix(HEAD).and_then(|r| r.strip_prefix(SERVICES)) else {
        // Not the shape serde writes for the struct's field order: write it whole.
        let config = with_services(globals.clone(), parts.values().map(|p| p.config.clone()).collect());
        return ConfigJson { json: config.to_json(), version: config.config_version };
    };
    let global_parts: Vec<ServicePart> = globals.services.iter().cloned().map(ServicePart::new).collect();
    let version = version(&skeleton, parts.digest(), global_parts.iter().map(|p| p.hash.as_str()));
    let globals_len: usize = global_parts.iter().map(|p| p.json.len() + 1).sum();
    let length = HEAD.len() + version.len() + SERVICES.len() + parts.len_joined() + globals_len + rest.len();
    let mut json = Vec::with_capacity(length);
    json.extend_from_slice(HEAD.as_bytes());
    json.extend_from_slice(version.as_bytes());
    json.extend_from_slice(SERVICES.as_bytes());
    parts.write_to(&mut json);
    for (i, part) in global_parts.iter().enumerate() {
        if i > 0 || parts.len_joined() > 0 {
            json.push(b',');
        }
        json.extend_from_slice(part.json.as_bytes());
    }
    json.extend_from_slice(rest.as_bytes());
    // Every piece is a JSON string written by serde: UTF-8 (checked, not assumed).
    let json = String::from_utf8(json).unwrap_or_default();
    ConfigJson { json, version }
}

/// The config's JSON with no version and no services.
fn skeleton(globals: &FilterConfig) -> String {
    FilterConfig { config_version: String::new(), services: Vec::new(), ..globals.clone() }.to_json()
}

/// A config's version: a hash of its content, made of the JSON of everything but its
/// services (`skeleton`), the digest of the registry's services' (name, JSON hash) entries
/// ([`super::joined::digest_of`]) and the global services' JSON hashes, so a config of
/// kept parts is versioned without hashing, or even reading, its megabytes again.
fn version<'a>(skeleton: &str, services_digest: [u8; 32], global_hashes: impl IntoIterator<Item = &'a str>) -> String {
    let mut hashed = String::from(skeleton);
    hashed.push(',');
    hashed.push_str(&hex::encode(services_digest));
    for hash in global_hashes {
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

/// The registry's services (`services`, by name) ahead of the global ones, and the
/// version of the whole.
pub fn with_services(globals: FilterConfig, mut services: Vec<ServiceConfig>) -> FilterConfig {
    let skeleton = skeleton(&globals);
    let registry_services = services.len();
    services.extend(globals.services.iter().cloned());
    let hashes: Vec<String> =
        services.iter().map(|s| crate::hash::short_hash(serde_json::to_string(s).unwrap_or_default().as_bytes())).collect();
    let (own, global) = hashes.split_at(registry_services);
    let digest = super::joined::digest_of(services.iter().zip(own).map(|(s, h)| (&s.name, h.as_str())));
    let config_version = version(&skeleton, digest, global.iter().map(String::as_str));
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
