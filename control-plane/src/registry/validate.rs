//! Registry validation: every rule about what a good registry is, in one place.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use imbl::ordmap::DiffItem;

use stagedoor_filter_core::config::{KeyConfig, RoleConfig};

use super::input::{name_the_service, MAX_REGISTRY_BYTES};
use super::edge::{EdgeTls, EdgeTlsSpec, UpstreamTls};
use super::model::{AuthSpec, CorsSpec, IdentitySpec, RateLimitSpec, RegistryFile, ServiceSpec, WebhookSpec};

/// A registry's services by name; see [`Registry::services`].
pub type Services = imbl::OrdMap<String, Arc<ServiceSpec>>;

/// A registry that passed validation, with the content hash that versions it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// Services by name, so every derived list is in a stable order. Persistent and shared:
    /// a registry made from another (an edit, or a parse rebased on the one it replaces,
    /// [`Registry::rebased_on`]) shares every unchanged entry with it, so comparing the two
    /// skips what they share (`imbl::OrdMap::diff`) and cloning one copies nothing.
    pub services: Services,
    /// As written (secrets by environment variable name, not value).
    pub auth: AuthSpec,
    pub identity: Option<IdentitySpec>,
    /// Keys with their secrets resolved, for the filter.
    pub keys: Vec<KeyConfig>,
    /// Keys that come from an identity provider's JWKS URL, fetched by `crate::jwks`.
    pub jwks: Vec<super::jwks_source::JwksSource>,
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
    /// As written, and with secrets resolved for the filter.
    pub signed_requests_spec: Option<super::signed::SignedRequestsSpec>,
    pub signed_requests: Option<super::signed::SignedRequests>,
    /// As written (file paths and variable names), and with certificates read and checked.
    pub edge_tls_spec: Option<EdgeTlsSpec>,
    pub edge_tls: Option<EdgeTls>,
    /// Services whose instances are reached over TLS, with their CA and client certificate.
    pub upstream_tls: BTreeMap<String, UpstreamTls>,
    /// As written, and with its secrets resolved (the refresh key, the access signing key).
    pub token_endpoint_spec: Option<super::token_endpoint::TokenEndpointSpec>,
    pub token_endpoint: Option<super::token_endpoint::TokenEndpoint>,
    /// Composite routes as written; `translate::check` runs the filter's compiler on them.
    pub composites: Vec<stagedoor_filter_core::aggregate::config::CompositeConfig>,
    /// Cached routes as written; the filter's compiler judges them, except the rewrite rule
    /// below (the filter does not know routes' rewrites).
    pub response_cache: Vec<stagedoor_filter_core::response_cache::config::CacheRouteConfig>,
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
    pub fn bounded(self) -> Self {
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

    /// The registry's own rules, step by step; the filter's rules (keys, rules, roles, public
    /// paths, header policies) are `translate::check`'s, run on the config it pushes.
    pub fn validate(file: &str, parsed: RegistryFile, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, RegistryError> {
        Self::from_file(parsed, env).map_err(|fault| fault.in_file(file))
    }

    fn from_file(parsed: RegistryFile, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, Fault> {
        let services = services(parsed.services)?;
        let now = crate::tls::load::unix_now();
        let (keys, jwks) = keys(&parsed.auth, env, now)?;
        let identity_signing_key = identity_signing_key(parsed.identity.as_ref(), env)?;
        if let Some(cors) = &parsed.cors {
            check_cors(cors)?;
        }
        if let Some(rate_limit) = &parsed.rate_limit {
            check_rate_limit(rate_limit)?;
        }
        let global_rate_limits = super::global_rate_limit::compile(parsed.global_rate_limit.as_ref(), env)
            .map_err(|e| Fault::item("global_rate_limit", e.field, e.reason))?;
        let webhooks = webhooks(&parsed.webhooks, &services, env)?;
        let signed_requests = parsed
            .signed_requests
            .as_ref()
            .map(|spec| super::signed::resolve(spec, env).map_err(|(field, reason)| Fault::item("signed_requests", field, reason)))
            .transpose()?;
        check_cached_routes(&parsed.response_cache, &services)?;
        let edge_tls = match &parsed.edge_tls {
            None => None,
            Some(spec) => Some(super::edge::resolve_edge(spec, env, now).map_err(|(item, (field, reason))| Fault::item(&item, field, reason))?),
        };
        let upstream_tls = upstream_tls(&services, now)?;
        let token_endpoint = match &parsed.token_endpoint {
            None => None,
            Some(spec) => Some(
                super::token_endpoint::compile(spec, &keys, env)
                    .map_err(|(field, reason)| Fault::item("token_endpoint", field, reason))?,
            ),
        };
        let custom_roles = parsed.roles.is_some();
        let roles = parsed.roles.clone().unwrap_or_else(stagedoor_filter_core::defaults::roles);
        let version = crate::hash::content_hash(&(
            &ByName(&services), &parsed.auth, &keys, &identity_signing_key, &roles, &parsed.cors, &parsed.rate_limit, &webhooks, &edge_tls,
            &upstream_tls, &parsed.global_rate_limit, &signed_requests, &jwks, &token_endpoint, &parsed.composites,
            &parsed.response_cache,
        ));
        Ok(Self {
            services,
            auth: parsed.auth,
            identity: parsed.identity,
            keys,
            jwks,
            identity_signing_key,
            roles,
            custom_roles,
            cors: parsed.cors,
            rate_limit: parsed.rate_limit,
            global_rate_limit_spec: parsed.global_rate_limit,
            global_rate_limits,
            webhook_specs: parsed.webhooks,
            webhooks,
            signed_requests_spec: parsed.signed_requests,
            signed_requests,
            edge_tls_spec: parsed.edge_tls,
            edge_tls,
            upstream_tls,
            token_endpoint_spec: parsed.token_endpoint,
            token_endpoint,
            composites: parsed.composites,
            response_cache: parsed.response_cache,
            version,
        })
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
            signed_requests: self.signed_requests_spec.as_ref().map(|spec| super::signed::redacted(spec, redact)),
            edge_tls: self.edge_tls_spec.clone(),
            token_endpoint: self.token_endpoint_spec.as_ref().map(|spec| super::token_endpoint::redacted(spec, redact)),
            services: self.services.values().map(|s| (**s).clone()).collect(),
            composites: self.composites.clone(),
            response_cache: self.response_cache.clone(),
        }
    }

    /// This registry with each service entry equal to one of `previous`'s shared with it
    /// (the map made by patching `previous`'s with what differs), so that comparing the
    /// two, or translating one after the other, costs what differs and not the registry: a
    /// parsed registry shares nothing with the one it replaces until rebased.
    pub fn rebased_on(mut self, previous: &Registry) -> Registry {
        let mut services = previous.services.clone();
        for item in previous.services.diff(&self.services) {
            match item {
                DiffItem::Add(name, svc) | DiffItem::Update { new: (name, svc), .. } => {
                    services.insert(name.clone(), svc.clone());
                }
                DiffItem::Remove(name, _) => {
                    services.remove(name);
                }
            }
        }
        self.services = services;
        self
    }

    /// Every certificate, key and CA file this registry read, for the certificate watcher.
    pub fn certificate_files(&self) -> Vec<String> {
        let upstream: Vec<_> = self.services.values().filter_map(|s| s.tls.as_ref()).collect();
        let mut files = super::edge::files_of(self.edge_tls_spec.as_ref(), &upstream);
        files.extend(self.auth.keys.iter().filter(|k| k.jwks_uri.is_some()).filter_map(|k| k.ca_file.clone()));
        files
    }

    /// The file's keys that are in `keys` (all but those with `jwks_uri`), in their order.
    pub fn static_key_specs(&self) -> impl Iterator<Item = &super::model::KeySpec> {
        self.auth.keys.iter().filter(|k| k.jwks_uri.is_none())
    }

    /// The file's index of the key at `index` in the filter's key list: a static key's own
    /// place, or for a key fetched from a JWKS (after the static ones), its source's place.
    pub fn key_index_in_file(&self, index: usize) -> Option<usize> {
        let mut static_places = self.auth.keys.iter().enumerate().filter(|(_, k)| k.jwks_uri.is_none()).map(|(i, _)| i);
        if let Some(place) = static_places.nth(index) {
            return Some(place);
        }
        let issuer = self.keys.get(index)?.issuer.as_deref()?;
        self.auth.keys.iter().position(|k| k.jwks_uri.is_some() && k.issuer.as_deref() == Some(issuer))
    }

    /// The HMAC key `stagedoor token` signs with: the one marked `dev: true`.
    pub fn dev_key(&self) -> Option<(Option<String>, String)> {
        self.static_key_specs()
            .zip(&self.keys)
            .find(|(spec, _)| spec.dev)
            .and_then(|(_, key)| key.secret.clone().map(|s| (key.kid.clone(), s)))
    }
}

/// What literal secrets read as in a registry the control plane hands out.
pub const REDACTED: &str = "<redacted>";

/// A broken rule, before the file's name is attached.
enum Fault {
    Service { service: String, field: String, reason: String },
    Item { item: String, field: String, reason: String },
}

impl Fault {
    fn service(service: &str, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Service { service: service.to_owned(), field: field.into(), reason: reason.into() }
    }

    fn item(item: &str, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Item { item: item.to_owned(), field: field.into(), reason: reason.into() }
    }

    fn in_file(self, file: &str) -> RegistryError {
        let file = file.to_owned();
        match self {
            Self::Service { service, field, reason } => RegistryError::Invalid { file, service, field, reason },
            Self::Item { item, field, reason } => RegistryError::Field { file, item, field, reason },
        }
    }
}

/// Services by name, each checked on its own and for prefixes another service routes.
fn services(specs: Vec<ServiceSpec>) -> Result<Services, Fault> {
    let mut services = Services::new();
    let mut prefix_owner: BTreeMap<String, String> = BTreeMap::new();
    for (index, svc) in specs.into_iter().enumerate() {
        let label = if svc.name.is_empty() { format!("services[{index}]") } else { svc.name.clone() };
        if !is_service_name(&svc.name) {
            return Err(Fault::service(&label, "name", "must match [a-z][a-z0-9-]{0,39}"));
        }
        if services.contains_key(&svc.name) {
            return Err(Fault::service(&label, "name", "is defined twice"));
        }
        check_routes(&svc, &label, &mut prefix_owner)?;
        check_instances(&svc, &label)?;
        check_traffic(&svc, &label)?;
        // Public paths, rules and header policies are the filter compiler's to judge
        // (translate::check); it names the service and the field.
        services.insert(svc.name.clone(), Arc::new(svc));
    }
    Ok(services)
}

/// The services serialized as the map of name to entry they are (what the version hashes:
/// the same bytes a `BTreeMap` of them gives).
struct ByName<'a>(&'a Services);

impl serde::Serialize for ByName<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, svc)| (name, &**svc)))
    }
}

/// Route prefixes: well formed, not the gateway's own /health, and routed once in the
/// whole registry (`prefix_owner` remembers which service has which).
fn check_routes(svc: &ServiceSpec, label: &str, prefix_owner: &mut BTreeMap<String, String>) -> Result<(), Fault> {
    if svc.routes.is_empty() {
        return Err(Fault::service(label, "routes", "needs at least one route"));
    }
    for (i, route) in svc.routes.iter().enumerate() {
        let field = format!("routes[{i}].prefix");
        check_prefix(&route.prefix).map_err(|r| Fault::service(label, field.clone(), r))?;
        if route.prefix == "/health" {
            return Err(Fault::service(label, field, "/health is answered by the gateway itself"));
        }
        if let Some(up) = &route.upstream_prefix {
            check_prefix(up).map_err(|r| Fault::service(label, format!("routes[{i}].upstream_prefix"), r))?;
        }
        if let Some(owner) = prefix_owner.insert(route.prefix.clone(), svc.name.clone()) {
            return Err(Fault::service(label, field, format!("{} is already routed to service \"{owner}\"", route.prefix)));
        }
    }
    Ok(())
}

fn check_instances(svc: &ServiceSpec, label: &str) -> Result<(), Fault> {
    for (i, inst) in svc.instances.iter().enumerate() {
        if !super::instance::is_host(&inst.address) {
            return Err(Fault::service(label, format!("instances[{i}].address"), "must be an IP address or a DNS name"));
        }
        if inst.port == 0 {
            return Err(Fault::service(label, format!("instances[{i}].port"), "must be 1-65535"));
        }
    }
    Ok(())
}

/// The traffic policy's own rules, and per-route timeouts under the service's prefixes.
fn check_traffic(svc: &ServiceSpec, label: &str) -> Result<(), Fault> {
    super::traffic::check(&svc.traffic).map_err(|(field, reason)| Fault::service(label, field, reason))?;
    for (i, rt) in svc.traffic.route_timeouts.iter().enumerate() {
        let field = format!("traffic.route_timeouts[{i}].prefix");
        check_prefix(&rt.prefix).map_err(|r| Fault::service(label, field.clone(), r))?;
        if !svc.routes.iter().any(|r| stagedoor_filter_core::path::is_under_prefix(&rt.prefix, &r.prefix)) {
            return Err(Fault::service(label, field, "must be under one of the service's route prefixes"));
        }
    }
    Ok(())
}

/// The token keys with their secrets resolved (literal or from the environment), and the
/// JWKS URLs whose keys the control plane fetches, one per issuer.
fn keys(
    auth: &AuthSpec,
    env: &dyn Fn(&str) -> Option<String>,
    now: i64,
) -> Result<(Vec<KeyConfig>, Vec<super::jwks_source::JwksSource>), Fault> {
    let mut keys = Vec::with_capacity(auth.keys.len());
    let mut jwks: Vec<super::jwks_source::JwksSource> = Vec::new();
    let hmac_issuer = auth.keys.iter().any(|k| k.jwks_uri.is_none() && (k.secret.is_some() || k.secret_env.is_some())).then_some(auth.issuer.as_str());
    for (i, key) in auth.keys.iter().enumerate() {
        let item = format!("auth.keys[{i}]");
        if let Some(uri) = &key.jwks_uri {
            let source = super::jwks_source::jwks_source(key, uri, hmac_issuer, now).map_err(|(field, reason)| Fault::item(&item, field, reason))?;
            if jwks.iter().any(|s| s.issuer == source.issuer) {
                return Err(Fault::item(&item, "issuer", format!("{:?} has a JWKS key already: one JWKS per issuer", source.issuer)));
            }
            jwks.push(source);
            continue;
        }
        for (field, set) in [("issuer", key.issuer.is_some()), ("refresh_secs", key.refresh_secs.is_some()), ("ca_file", key.ca_file.is_some())] {
            if set {
                return Err(Fault::item(&item, field, "only a key with `jwks_uri` has one"));
            }
        }
        let secret = match (&key.secret, &key.secret_env) {
            (Some(_), Some(_)) => return Err(Fault::item(&item, "secret", "give `secret` or `secret_env`, not both")),
            (Some(secret), None) => Some(secret.clone()),
            (None, Some(var)) => Some(from_env(env, var).map_err(|reason| Fault::item(&item, "secret_env", reason))?),
            (None, None) => None,
        };
        if key.dev && !key.algorithms.iter().any(|a| a.starts_with("HS")) {
            return Err(Fault::item(&item, "dev", "only an HMAC key can sign development tokens"));
        }
        keys.push(KeyConfig { kid: key.kid.clone(), algorithms: key.algorithms.clone(), secret, jwk: key.jwk.clone(), issuer: None });
    }
    Ok((keys, jwks))
}

fn identity_signing_key(identity: Option<&IdentitySpec>, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, Fault> {
    match identity {
        None => Ok(None),
        Some(IdentitySpec { signing_key: Some(k), signing_key_env: None }) => Ok(Some(k.clone())),
        Some(IdentitySpec { signing_key: None, signing_key_env: Some(var) }) => {
            from_env(env, var).map(Some).map_err(|reason| Fault::item("identity", "signing_key_env", reason))
        }
        Some(_) => Err(Fault::item("identity", "signing_key", "give exactly one of `signing_key` or `signing_key_env`")),
    }
}

/// A miss is fetched with the request's own path, so a cached route may not sit under a
/// prefix Envoy rewrites (the fetch would skip the rewrite).
fn check_cached_routes(
    routes: &[stagedoor_filter_core::response_cache::config::CacheRouteConfig],
    services: &Services,
) -> Result<(), Fault> {
    for (i, route) in routes.iter().enumerate() {
        let rewritten = services.values().flat_map(|s| &s.routes).find(|r| {
            r.upstream_prefix.is_some() && stagedoor_filter_core::path::is_under_prefix(&route.path, &r.prefix)
        });
        if let Some(r) = rewritten {
            let item = format!("response_cache[{i}] ({})", route.name);
            return Err(Fault::item(&item, "path", format!("is under {}, which is rewritten to the service: not cacheable", r.prefix)));
        }
    }
    Ok(())
}

fn check_cors(cors: &CorsSpec) -> Result<(), Fault> {
    if cors.allowed_origins.is_empty() {
        return Err(Fault::item("cors", "allowed_origins", "list at least one origin"));
    }
    if let Some(bad) = cors.allowed_origins.iter().find(|o| !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/')) {
        return Err(Fault::item("cors", "allowed_origins", format!("{bad:?} is not an origin like https://app.example.com")));
    }
    Ok(())
}

fn check_rate_limit(rate_limit: &RateLimitSpec) -> Result<(), Fault> {
    if rate_limit.requests == 0 {
        return Err(Fault::item("rate_limit", "requests", "must be positive"));
    }
    if rate_limit.window_ms < 50 {
        return Err(Fault::item("rate_limit", "window_ms", "must be at least 50"));
    }
    if rate_limit.max_clients == 0 {
        return Err(Fault::item("rate_limit", "max_clients", "must be positive"));
    }
    Ok(())
}

/// Webhooks with their secrets resolved, each on a path some service routes.
fn webhooks(
    specs: &[WebhookSpec],
    services: &Services,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<stagedoor_filter_core::config::WebhookConfig>, Fault> {
    let mut webhooks = Vec::with_capacity(specs.len());
    for (i, hook) in specs.iter().enumerate() {
        let item = format!("webhooks[{i}]");
        let secret = match (&hook.stripe_secret, &hook.stripe_secret_env) {
            (Some(s), None) => s.clone(),
            (None, Some(var)) => from_env(env, var).map_err(|reason| Fault::item(&item, "stripe_secret_env", reason))?,
            _ => return Err(Fault::item(&item, "stripe_secret", "give exactly one of `stripe_secret` or `stripe_secret_env`")),
        };
        if !services.values().any(|s| s.routes.iter().any(|r| stagedoor_filter_core::path::is_under_prefix(&hook.path, &r.prefix))) {
            return Err(Fault::item(&item, "path", format!("{} is not routed to any service", hook.path)));
        }
        webhooks.push(stagedoor_filter_core::config::WebhookConfig { path: hook.path.clone(), stripe_secret: secret });
    }
    Ok(webhooks)
}

/// The TLS material of every service whose instances are reached over TLS, read and checked.
fn upstream_tls(services: &Services, now: i64) -> Result<BTreeMap<String, UpstreamTls>, Fault> {
    let mut upstream_tls = BTreeMap::new();
    for svc in services.values() {
        if let Some(spec) = &svc.tls {
            let resolved = super::edge::resolve_upstream(spec, now).map_err(|(field, reason)| Fault::service(&svc.name, field, reason))?;
            upstream_tls.insert(svc.name.clone(), resolved);
        }
    }
    Ok(upstream_tls)
}

/// A secret from the control plane's environment, or why not.
fn from_env(env: &dyn Fn(&str) -> Option<String>, var: &str) -> Result<String, String> {
    env(var).ok_or_else(|| format!("{var} is not set in the control plane's environment"))
}

/// The filter's rule for a routed prefix (one owner: `stagedoor_filter_core::path`).
fn check_prefix(prefix: &str) -> Result<(), String> {
    stagedoor_filter_core::path::check_prefix(prefix).map_err(|e| e.to_string())
}

/// `[a-z][a-z0-9-]{0,39}`: a registry service name (also checked for live instances).
pub fn is_service_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 40
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

