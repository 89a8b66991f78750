//! Registry validation: every rule about what a good registry is, in one place.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use stagedoor_filter_core::config::{KeyConfig, RoleConfig};

use super::input::{name_the_service, MAX_REGISTRY_BYTES};
use super::edge::{EdgeTls, EdgeTlsSpec, UpstreamTls};
use super::model::{AuthSpec, CorsSpec, IdentitySpec, RateLimitSpec, RegistryFile, ServiceSpec, WebhookSpec};

/// A registry that passed validation, with the content hash that versions it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// Services by name, so every derived list is in a stable order.
    pub services: BTreeMap<String, ServiceSpec>,
    /// As written (secrets by environment variable name, not value).
    pub auth: AuthSpec,
    pub identity: Option<IdentitySpec>,
    /// Keys with their secrets resolved, for the filter.
    pub keys: Vec<KeyConfig>,
    pub identity_signing_key: Option<String>,
    pub roles: BTreeMap<String, RoleConfig>,
    /// Whether the file replaced the default roles (kept to write the file back as it was).
    pub custom_roles: bool,
    pub cors: Option<CorsSpec>,
    pub rate_limit: Option<RateLimitSpec>,
    /// As written, and compiled with the salt resolved (for the RateLimitService).
    pub global_rate_limit_spec: Option<stagedoor_ratelimit::config::GlobalRateLimitConfig>,
    pub global_rate_limits: Option<stagedoor_ratelimit::compile::CompiledLimits>,
    /// As written, and with secrets resolved for the filter.
    pub webhook_specs: Vec<WebhookSpec>,
    pub webhooks: Vec<stagedoor_filter_core::config::WebhookConfig>,
    /// As written (file paths and variable names), and with certificates read and checked.
    pub edge_tls_spec: Option<EdgeTlsSpec>,
    pub edge_tls: Option<EdgeTls>,
    /// Services whose instances are reached over TLS, with their CA and client certificate.
    pub upstream_tls: BTreeMap<String, UpstreamTls>,
    /// Hash of the canonical form: an unchanged registry keeps its version.
    pub version: String,
}

/// A registry error, naming the file, the service and the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{file}: cannot read: {source}")]
    Io { file: String, source: std::io::Error },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: {bytes} bytes is over the registry's limit of {limit} bytes")]
    TooLarge { file: String, bytes: usize, limit: usize },
    #[error("{file}: service \"{service}\": {field}: {reason}")]
    Invalid { file: String, service: String, field: String, reason: String },
    /// Outside any service (auth, identity, roles), or found by the filter's own compiler,
    /// whose `item` already names the service.
    #[error("{file}: {item}: {field}: {reason}")]
    Field { file: String, item: String, field: String, reason: String },
}

impl RegistryError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { file: path.display().to_string(), source }
    }

    /// The same error with every part it echoes cut to a bounded length.
    fn bounded(self) -> Self {
        use super::input::bounded;
        match self {
            Self::Io { file, source } => Self::Io { file: bounded(&file), source },
            Self::Syntax { file, message } => Self::Syntax { file: bounded(&file), message: bounded(&message) },
            Self::TooLarge { file, bytes, limit } => Self::TooLarge { file: bounded(&file), bytes, limit },
            Self::Invalid { file, service, field, reason } => {
                Self::Invalid { file: bounded(&file), service: bounded(&service), field: bounded(&field), reason: bounded(&reason) }
            }
            Self::Field { file, item, field, reason } => {
                Self::Field { file: bounded(&file), item: bounded(&item), field: bounded(&field), reason: bounded(&reason) }
            }
        }
    }
}

impl Registry {
    /// Parses YAML (JSON is YAML too) and validates it, resolving `*_env` secrets from this
    /// process's environment. `file` only names the source in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, RegistryError> {
        Self::parse_with_env(file, text, &|name| std::env::var(name).ok())
    }

    /// Refuses a text over [`MAX_REGISTRY_BYTES`] before parsing it; every error comes back
    /// with what it echoes bounded, and serde's `services[N]` named by the service's name.
    pub fn parse_with_env(file: &str, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, RegistryError> {
        if text.len() > MAX_REGISTRY_BYTES {
            return Err(RegistryError::TooLarge { file: file.to_owned(), bytes: text.len(), limit: MAX_REGISTRY_BYTES }.bounded());
        }
        let parsed: RegistryFile = serde_yaml::from_str(text).map_err(|e| {
            RegistryError::Syntax { file: file.to_owned(), message: name_the_service(&e.to_string(), text) }.bounded()
        })?;
        Self::validate(file, parsed, env).map_err(RegistryError::bounded)
    }

    pub fn validate(file: &str, parsed: RegistryFile, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, RegistryError> {
        let field_error = |item: &str, field: String, reason: String| RegistryError::Field {
            file: file.to_owned(),
            item: item.to_owned(),
            field,
            reason,
        };
        let invalid = |service: &str, field: String, reason: String| RegistryError::Invalid {
            file: file.to_owned(),
            service: service.to_owned(),
            field,
            reason,
        };
        let mut services = BTreeMap::new();
        let mut prefix_owner: BTreeMap<String, String> = BTreeMap::new();
        for (index, svc) in parsed.services.into_iter().enumerate() {
            let name = svc.name.clone();
            let label = if name.is_empty() { format!("services[{index}]") } else { name.clone() };
            if !is_service_name(&name) {
                return Err(invalid(&label, "name".into(), "must match [a-z][a-z0-9-]{0,39}".into()));
            }
            if services.contains_key(&name) {
                return Err(invalid(&label, "name".into(), "is defined twice".into()));
            }
            if svc.routes.is_empty() {
                return Err(invalid(&label, "routes".into(), "needs at least one route".into()));
            }
            for (i, route) in svc.routes.iter().enumerate() {
                check_prefix(&route.prefix).map_err(|r| invalid(&label, format!("routes[{i}].prefix"), r))?;
                if route.prefix == "/health" {
                    return Err(invalid(&label, format!("routes[{i}].prefix"), "/health is answered by the gateway itself".into()));
                }
                if let Some(up) = &route.upstream_prefix {
                    check_prefix(up).map_err(|r| invalid(&label, format!("routes[{i}].upstream_prefix"), r))?;
                }
                if let Some(owner) = prefix_owner.insert(route.prefix.clone(), name.clone()) {
                    return Err(invalid(
                        &label,
                        format!("routes[{i}].prefix"),
                        format!("{} is already routed to service \"{owner}\"", route.prefix),
                    ));
                }
            }
            for (i, inst) in svc.instances.iter().enumerate() {
                if !is_host(&inst.address) {
                    return Err(invalid(&label, format!("instances[{i}].address"), "must be an IP address or a DNS name".into()));
                }
                if inst.port == 0 {
                    return Err(invalid(&label, format!("instances[{i}].port"), "must be 1-65535".into()));
                }
            }
            super::traffic::check(&svc.traffic).map_err(|(field, reason)| invalid(&label, field, reason))?;
            for (i, rt) in svc.traffic.route_timeouts.iter().enumerate() {
                let field = format!("traffic.route_timeouts[{i}].prefix");
                check_prefix(&rt.prefix).map_err(|r| invalid(&label, field.clone(), r))?;
                if !svc.routes.iter().any(|r| stagedoor_filter_core::path::is_under_prefix(&rt.prefix, &r.prefix)) {
                    return Err(invalid(&label, field, "must be under one of the service's route prefixes".into()));
                }
            }
            // Public paths, rules and header policies are the filter compiler's to judge
            // (below); it names the service and the field.
            services.insert(name, svc);
        }
        let mut keys = Vec::with_capacity(parsed.auth.keys.len());
        for (i, key) in parsed.auth.keys.iter().enumerate() {
            let secret = match (&key.secret, &key.secret_env) {
                (Some(_), Some(_)) => {
                    return Err(field_error(&format!("auth.keys[{i}]"), "secret".into(), "give `secret` or `secret_env`, not both".into()))
                }
                (Some(secret), None) => Some(secret.clone()),
                (None, Some(var)) => Some(env(var).ok_or_else(|| {
                    field_error(&format!("auth.keys[{i}]"), "secret_env".into(), format!("{var} is not set in the control plane's environment"))
                })?),
                (None, None) => None,
            };
            if key.dev && !key.algorithms.iter().any(|a| a.starts_with("HS")) {
                return Err(field_error(&format!("auth.keys[{i}]"), "dev".into(), "only an HMAC key can sign development tokens".into()));
            }
            keys.push(KeyConfig { kid: key.kid.clone(), algorithms: key.algorithms.clone(), secret, jwk: key.jwk.clone() });
        }
        let identity_signing_key = match &parsed.identity {
            None => None,
            Some(IdentitySpec { signing_key: Some(k), signing_key_env: None }) => Some(k.clone()),
            Some(IdentitySpec { signing_key: None, signing_key_env: Some(var) }) => Some(env(var).ok_or_else(|| {
                field_error("identity", "signing_key_env".into(), format!("{var} is not set in the control plane's environment"))
            })?),
            Some(_) => return Err(field_error("identity", "signing_key".into(), "give exactly one of `signing_key` or `signing_key_env`".into())),
        };
        if let Some(cors) = &parsed.cors {
            if cors.allowed_origins.is_empty() {
                return Err(field_error("cors", "allowed_origins".into(), "list at least one origin".into()));
            }
            if let Some(bad) = cors.allowed_origins.iter().find(|o| !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/')) {
                return Err(field_error("cors", "allowed_origins".into(), format!("{bad:?} is not an origin like https://app.example.com")));
            }
        }
        if let Some(rl) = &parsed.rate_limit {
            if rl.requests == 0 {
                return Err(field_error("rate_limit", "requests".into(), "must be positive".into()));
            }
            if rl.window_ms < 50 {
                return Err(field_error("rate_limit", "window_ms".into(), "must be at least 50".into()));
            }
            if rl.max_clients == 0 {
                return Err(field_error("rate_limit", "max_clients".into(), "must be positive".into()));
            }
        }
        let global_rate_limits = super::global_rate_limit::compile(parsed.global_rate_limit.as_ref(), env)
            .map_err(|e| field_error("global_rate_limit", e.field, e.reason))?;
        let mut webhooks = Vec::new();
        for (i, hook) in parsed.webhooks.iter().enumerate() {
            let item = format!("webhooks[{i}]");
            let secret = match (&hook.stripe_secret, &hook.stripe_secret_env) {
                (Some(s), None) => s.clone(),
                (None, Some(var)) => env(var).ok_or_else(|| {
                    field_error(&item, "stripe_secret_env".into(), format!("{var} is not set in the control plane's environment"))
                })?,
                _ => return Err(field_error(&item, "stripe_secret".into(), "give exactly one of `stripe_secret` or `stripe_secret_env`".into())),
            };
            if !services.values().any(|s| s.routes.iter().any(|r| stagedoor_filter_core::path::is_under_prefix(&hook.path, &r.prefix))) {
                return Err(field_error(&item, "path".into(), format!("{} is not routed to any service", hook.path)));
            }
            webhooks.push(stagedoor_filter_core::config::WebhookConfig { path: hook.path.clone(), stripe_secret: secret });
        }
        let now = crate::tls::load::unix_now();
        let edge_tls = match &parsed.edge_tls {
            None => None,
            Some(spec) => Some(super::edge::resolve_edge(spec, env, now).map_err(|(item, (field, reason))| field_error(&item, field, reason))?),
        };
        let mut upstream_tls = BTreeMap::new();
        for svc in services.values() {
            if let Some(spec) = &svc.tls {
                let resolved = super::edge::resolve_upstream(spec, now).map_err(|(field, reason)| invalid(&svc.name, field, reason))?;
                upstream_tls.insert(svc.name.clone(), resolved);
            }
        }
        let custom_roles = parsed.roles.is_some();
        let roles = parsed.roles.clone().unwrap_or_else(stagedoor_filter_core::defaults::roles);
        let version = content_hash(&(&services, &parsed.auth, &keys, &identity_signing_key, &roles, &parsed.cors, &parsed.rate_limit, &webhooks, &edge_tls, &upstream_tls, &parsed.global_rate_limit));
        let registry = Self {
            services,
            auth: parsed.auth,
            identity: parsed.identity,
            keys,
            identity_signing_key,
            roles,
            custom_roles,
            cors: parsed.cors,
            rate_limit: parsed.rate_limit,
            global_rate_limit_spec: parsed.global_rate_limit,
            global_rate_limits,
            webhook_specs: parsed.webhooks,
            webhooks,
            edge_tls_spec: parsed.edge_tls,
            edge_tls,
            upstream_tls,
            version,
        };
        // The filter's own compiler is the one place that knows what a good key, rule or
        // role is: run it now so a bad registry never reaches an Envoy.
        let config = crate::translate::filter_config(&registry, None);
        stagedoor_filter_core::Policy::compile(&config).map_err(|e| match &e.service {
            Some(service) => invalid(service, registry_field(&registry, service, &e.field), e.reason.clone()),
            None => field_error(&e.item, e.field.clone(), e.reason.clone()),
        })?;
        Ok(registry)
    }

    /// The file as it was written (secrets by variable name, literal secrets redacted).
    pub fn to_file(&self, redact: bool) -> RegistryFile {
        let mut auth = self.auth.clone();
        let mut identity = self.identity.clone();
        if redact {
            for key in &mut auth.keys {
                if key.secret.is_some() {
                    key.secret = Some(String::from(REDACTED));
                }
            }
            if let Some(id) = identity.as_mut().filter(|id| id.signing_key.is_some()) {
                id.signing_key = Some(String::from(REDACTED));
            }
        }
        RegistryFile {
            auth,
            identity,
            roles: self.custom_roles.then(|| self.roles.clone()),
            cors: self.cors.clone(),
            rate_limit: self.rate_limit.clone(),
            global_rate_limit: self.global_rate_limit_spec.as_ref().map(|spec| super::global_rate_limit::redacted(spec, redact)),
            webhooks: self
                .webhook_specs
                .iter()
                .map(|w| WebhookSpec {
                    stripe_secret: w.stripe_secret.as_ref().map(|s| if redact { String::from(REDACTED) } else { s.clone() }),
                    ..w.clone()
                })
                .collect(),
            edge_tls: self.edge_tls_spec.clone(),
            services: self.services.values().cloned().collect(),
        }
    }

    /// Every certificate, key and CA file this registry read, for the certificate watcher.
    pub fn certificate_files(&self) -> Vec<String> {
        let upstream: Vec<_> = self.services.values().filter_map(|s| s.tls.as_ref()).collect();
        super::edge::files_of(self.edge_tls_spec.as_ref(), &upstream)
    }

    /// The HMAC key `stagedoor token` signs with: the one marked `dev: true`.
    pub fn dev_key(&self) -> Option<(Option<String>, String)> {
        self.auth
            .keys
            .iter()
            .zip(&self.keys)
            .find(|(spec, _)| spec.dev)
            .and_then(|(_, key)| key.secret.clone().map(|s| (key.kid.clone(), s)))
    }
}

/// What literal secrets read as in a registry the control plane hands out.
pub const REDACTED: &str = "<redacted>";

/// The filter's rule for a routed prefix (one owner: `stagedoor_filter_core::path`).
fn check_prefix(prefix: &str) -> Result<(), String> {
    stagedoor_filter_core::path::check_prefix(prefix).map_err(|e| e.to_string())
}

/// The registry's name for a field of the filter's service config: the filter's
/// `prefixes[i]` is the i-th route's prefix in the file.
fn registry_field(registry: &Registry, service: &str, field: &str) -> String {
    let route = field.strip_prefix("prefixes[").and_then(|rest| rest.strip_suffix(']')).and_then(|i| i.parse::<usize>().ok());
    match route {
        Some(i) if registry.services.get(service).is_some_and(|s| i < s.routes.len()) => format!("routes[{i}].prefix"),
        _ => field.to_owned(),
    }
}

/// `[a-z][a-z0-9-]{0,39}`: a registry service name (also checked for live instances).
pub fn is_service_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 40
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_host(address: &str) -> bool {
    address.parse::<std::net::IpAddr>().is_ok()
        || (!address.is_empty()
            && address.len() <= 253
            && address.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            }))
}

fn content_hash(canonical: &impl serde::Serialize) -> String {
    // serde_json of BTreeMaps and plain structs is deterministic and cannot fail.
    let canonical = serde_json::to_vec(canonical).unwrap_or_default();
    hex::encode(&Sha256::digest(&canonical)[..8])
}
