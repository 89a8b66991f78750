//! The compiled, validated form of a [`FilterConfig`]: what the filter consults per request.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::aggregate::config::{CompositeConfig, MAX_COMPOSITES};
use crate::aggregate::Composite;
use crate::response_cache::config::{CacheRouteConfig, MAX_CACHE_ROUTES};
use crate::response_cache::CacheRoute;
use crate::config::{
    AuthConfig, FilterConfig, HeaderPolicyConfig, JwksConfig, KeyConfig, KeyReportConfig, RevocationConfig, RoleConfig, ServiceConfig, Unmatched, WebhookConfig, MAX_LEEWAY_SECS,
};
use crate::headers::HeaderPolicy;
use crate::path::{check_prefix, is_normalized, is_under_prefix, segment_eq, PathPattern, PathReadings, PatternError};
use crate::rbac::{compile_roles, Rule};
use crate::token::{compile_key_set, KeySource, Verifier, VerifyingKey};
use crate::signature::{SignaturePolicy, SignedRoutes};
use crate::validation::{RouteValidation, ValidationConfigError};

/// A config the filter can enforce. Only [`Policy::compile`] makes one, so holding a
/// `Policy` means every rule in it was checked.
#[derive(Debug, Clone)]
pub struct Policy {
    pub config_version: String,
    services: Vec<Service>,
    /// Longest prefix first, so the first hit is the one Envoy's route table picks too.
    prefixes: Prefixes,
    pub verifier: Verifier,
    pub roles: BTreeMap<String, RoleConfig>,
    pub identity_key: Option<Vec<u8>>,
    pub revocation: Option<RevocationConfig>,
    /// Where unknown kids of JWKS issuers are reported (crate::key_reports).
    pub key_report: Option<KeyReportConfig>,
    pub token_cache_entries: usize,
    /// Header policy for paths no service owns (Envoy answers them with a 404).
    pub unrouted_headers: HeaderPolicy,
    /// (exact path, Stripe signing secret) of webhook endpoints checked at the edge.
    pub webhooks: Vec<(String, Vec<u8>)>,
    /// Callers' keys for signed requests; present when any service requires signatures.
    pub signatures: Option<SignaturePolicy>,
    /// Composite routes, matched before any service's prefix (their paths are their own).
    pub composites: Vec<Rc<Composite>>,
    /// Cached routes, each with the service whose cluster a miss is fetched from.
    pub cache_routes: Vec<(Rc<CacheRoute>, String)>,
    /// Whether any service validates requests: without one, the validation head check is
    /// one branch on every request instead of a second service lookup.
    pub validates: bool,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub public_paths: Vec<PathPattern>,
    pub rules: Vec<Rule>,
    pub headers: HeaderPolicy,
    pub unmatched: Unmatched,
    /// Shared, so a request waiting for its body holds its route without copying schemas.
    pub validations: Vec<Rc<RouteValidation>>,
    /// The requests that must be signed.
    pub signed: SignedRoutes,
    /// Every rule (and `unmatched: deny`) decided in shadow only.
    pub rbac_shadow: bool,
    /// Whether anything of the service is decided in shadow (a shadow rule, or
    /// `rbac_shadow`): the shadow decision is only computed then, or for a role with
    /// shadow permissions.
    pub has_shadow: bool,
}

/// A config error, naming the item and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{item}: {field}: {reason}")]
pub struct CompileError {
    pub item: String,
    /// The service at fault, when the item is one (so the registry can name it its way).
    pub service: Option<String>,
    pub field: String,
    pub reason: String,
}

impl CompileError {
    fn new(item: impl Into<String>, field: impl Into<String>, reason: impl ToString) -> Self {
        Self { item: item.into(), service: None, field: field.into(), reason: reason.to_string() }
    }

    fn in_service(service: &str, field: impl Into<String>, reason: impl ToString) -> Self {
        Self { service: Some(service.to_owned()), ..Self::new(format!("service \"{service}\""), field, reason) }
    }
}

impl Policy {
    #[inline(never)] // configure-time (`OUT_OF_LINE`)
    pub fn compile(config: &FilterConfig) -> Result<Self, CompileError> {
        let (services, routed) = compile_services(&config.services, &|_| false)?;
        let mut prefixes: Prefixes = routed.into_iter().map(|(prefix, index)| (prefix.to_owned(), index)).collect();
        prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        let Globals { signatures, verifier, roles, webhooks, composites, cache_routes } =
            compile_globals(config, &config.services, &prefixes)?;
        let validates = services.iter().any(|s| !s.validations.is_empty());
        Ok(Self {
            config_version: config.config_version.clone(),
            services,
            prefixes,
            verifier,
            roles,
            identity_key: config.identity_signing_key.as_ref().map(|k| k.as_bytes().to_vec()),
            revocation: config.revocation.clone(),
            key_report: config.auth.jwks.as_ref().and_then(|j| j.report.clone()),
            token_cache_entries: config.token_cache_entries,
            unrouted_headers: HeaderPolicy::open(),
            webhooks,
            signatures,
            composites,
            cache_routes,
            validates,
        })
    }

    /// Decides what [`Policy::compile`] decides for `config` with `services` in place of its
    /// own (shared, so a caller that keeps each service's part copies none), without making
    /// the policy. A service `compiled_before(index)` vouches for (its part, unchanged,
    /// compiled without error before: nothing of a service's own checks depends on the
    /// others) is checked only against the other services' prefixes, so the control plane's
    /// check of a one-service edit compiles that service, not 10,000. The same steps in the
    /// same order as `compile`, so the same first error.
    pub fn check<S: Borrow<ServiceConfig>>(
        config: &FilterConfig,
        services: &[S],
        compiled_before: impl Fn(usize) -> bool,
    ) -> Result<(), CompileError> {
        let (_, prefixes) = compile_services(services, &compiled_before)?;
        compile_globals(config, services, &prefixes).map(drop)
    }

    /// The webhook whose signature a request must carry: one whose path any reading of
    /// the request's path names (so a case or trailing-slash variant is checked too).
    pub fn webhook_for(&self, readings: &PathReadings<'_>) -> Option<usize> {
        self.webhooks.iter().position(|(hook_path, _)| readings.each().any(|path| segment_eq(hook_path, path)))
    }

    /// The cached route whose path `path` (no query) is, whatever the method (whether it
    /// caches the method: [`CacheRoute::caches_method`]), and its service's name.
    pub fn cache_route_on_path(&self, path: &str) -> Option<(&Rc<CacheRoute>, &str)> {
        self.cache_routes.iter().find(|(route, _)| route.covers_path(path)).map(|(route, service)| (route, service.as_str()))
    }

    /// The composite route `path` (no query) is, if any.
    pub fn composite_for(&self, path: &str) -> Option<&Rc<Composite>> {
        self.composites.iter().find(|c| c.matches(path).is_some())
    }

    /// The service that judges `path`: a composite route's own, else the one Envoy routes
    /// it to, by the longest whole-segment prefix.
    pub fn service_for(&self, path: &str) -> Option<&Service> {
        if let Some(composite) = self.composite_for(path) {
            return Some(&composite.service);
        }
        self.prefixes
            .iter()
            .find(|(prefix, _)| is_under_prefix(path, prefix))
            .and_then(|(_, index)| self.services.get(*index))
    }
}

/// (prefix, index into the services), longest prefix first.
type Prefixes = Vec<(String, usize)>;

/// What the config holds besides its services, compiled.
struct Globals {
    signatures: Option<SignaturePolicy>,
    verifier: Verifier,
    roles: BTreeMap<String, RoleConfig>,
    webhooks: Vec<(String, Vec<u8>)>,
    composites: Vec<Rc<Composite>>,
    cache_routes: Vec<(Rc<CacheRoute>, String)>,
}

/// `OUT_OF_LINE`: the compile's steps stay functions of their own (`#[inline(never)]`).
/// Envoy compiles the module with TurboFan at start, and the memory that compile takes,
/// most of which Envoy's allocator keeps afterwards, grows with the module's largest
/// function, not its total size (bench/README.md, "Fifth pass": 400 KB of code as ten
/// 40 KB functions costs Envoy 16 MB of RSS, as a hundred 4 KB ones 3 MB). Inlined into
/// one another they made `Policy::compile` a 31 KB function.
///
/// Everything of `config` but its services (`services`, with their `prefixes`), checked
/// and compiled.
#[inline(never)] // configure-time: see `OUT_OF_LINE`
fn compile_globals<S: Borrow<ServiceConfig>, P: AsRef<str>>(
    config: &FilterConfig,
    services: &[S],
    prefixes: &[(P, usize)],
) -> Result<Globals, CompileError> {
    // Destructured, so a field added to the config cannot be left out here unnoticed.
    let FilterConfig {
        config_version: _,
        services: _,
        auth,
        roles,
        identity_signing_key,
        revocation,
        token_cache_entries: _,
        webhooks,
        signed_requests,
        composites,
        response_cache,
    } = config;
    let signatures = signed_requests
        .as_ref()
        .map(|s| SignaturePolicy::compile(s).map_err(|e| CompileError::new("signed_requests", e.field, e.reason)))
        .transpose()?;
    if signatures.is_none() {
        if let Some(svc) = services.iter().map(Borrow::borrow).find(|s: &&ServiceConfig| s.require_signatures || !s.signed_routes.is_empty()) {
            let field = if svc.require_signatures { "require_signatures" } else { "signed_routes" };
            return Err(CompileError::in_service(&svc.name, field, "needs the callers' keys: add signed_requests"));
        }
    }
    let verifier = compile_verifier(auth)?;
    let roles = compile_roles(roles).map_err(|e| CompileError::new("roles", "", e))?;
    if identity_signing_key.as_ref().is_some_and(|key| key.len() < 32) {
        return Err(CompileError::new("identity_signing_key", "", "must be at least 32 bytes"));
    }
    if let Some(rev) = revocation {
        compile_revocation(rev)?;
    }
    Ok(Globals {
        signatures,
        verifier,
        roles,
        webhooks: compile_webhooks(webhooks)?,
        composites: compile_composites(composites, services)?,
        cache_routes: compile_cache_routes(response_cache, services, prefixes)?,
    })
}

/// Every prefix with the index of its service, in the services' order.
type Routed<'a> = Vec<(&'a str, usize)>;

/// The services compiled (but those `compiled_before` vouches for), and their prefixes.
#[inline(never)] // configure-time: see `OUT_OF_LINE`
fn compile_services<'a, S: Borrow<ServiceConfig>>(
    configs: &'a [S],
    compiled_before: &dyn Fn(usize) -> bool,
) -> Result<(Vec<Service>, Routed<'a>), CompileError> {
    let mut services = Vec::with_capacity(configs.len());
    let mut prefixes = Vec::with_capacity(configs.len());
    // Prefix -> the service that has it: a lookup, not a scan of every prefix so far
    // (which made 10,000 services a second of compiling, bench/README.md).
    let mut routed = std::collections::HashMap::with_capacity(configs.len());
    let mut seen_headers = SeenHeaders::new();
    for (index, svc) in configs.iter().enumerate() {
        let svc = svc.borrow();
        let checked = compiled_before(index);
        if !checked {
            check_service_head(index, svc)?;
        }
        for (i, prefix) in svc.prefixes.iter().enumerate() {
            if !checked {
                check_prefix(prefix).map_err(|e| CompileError::in_service(&svc.name, format!("prefixes[{i}]"), e))?;
            }
            if let Some(other) = routed.insert(prefix.as_str(), index) {
                let other_name = &configs[other].borrow().name;
                return Err(CompileError::in_service(
                    &svc.name,
                    format!("prefixes[{i}]"),
                    format!("{prefix} is already routed to service \"{other_name}\""),
                ));
            }
            prefixes.push((prefix.as_str(), index));
        }
        if !checked {
            services.push(compile_service(svc, &mut seen_headers)?);
        }
    }
    Ok((services, prefixes))
}

/// A service's name and that it has a prefix: checked before its prefixes are.
fn check_service_head(index: usize, svc: &ServiceConfig) -> Result<(), CompileError> {
    if svc.name.is_empty() {
        return Err(CompileError::new(format!("services[{index}]"), "name", "must not be empty"));
    }
    if svc.prefixes.is_empty() {
        return Err(CompileError::in_service(&svc.name, "prefixes", "needs at least one prefix"));
    }
    Ok(())
}

/// Everything of one service after its prefixes: nothing here depends on another service.
#[inline(never)] // configure-time: see `OUT_OF_LINE`
fn compile_service<'a>(svc: &'a ServiceConfig, seen_headers: &mut SeenHeaders<'a>) -> Result<Service, CompileError> {
    let ServiceConfig {
        name,
        prefixes: _,
        public_paths,
        rules,
        request_headers,
        unmatched,
        validation,
        require_signatures,
        signed_routes,
        rbac_shadow,
    } = svc;
    let public_paths = public_paths
        .iter()
        .enumerate()
        .map(|(i, p)| PathPattern::parse(p).map_err(|e| CompileError::in_service(name, format!("public_paths[{i}]"), e)))
        .collect::<Result<Vec<_>, _>>()?;
    let rules = compile_rules(name, rules)?;
    let headers = compile_headers(name, request_headers, seen_headers)?;
    let validations = validation
        .iter()
        .enumerate()
        .map(|(i, v)| {
            // The route is named beside its index: a schema path alone does not say which.
            let field = |e: &ValidationConfigError| format!("validation[{i}] ({} {}).{}", v.method, v.path, e.field);
            RouteValidation::compile(v).map(Rc::new).map_err(|e| CompileError::in_service(name, field(&e), e.reason))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let signed = SignedRoutes::compile(*require_signatures, signed_routes)
        .map_err(|e| CompileError::in_service(name, e.field, e.reason))?;
    let has_shadow = *rbac_shadow || rules.iter().any(|r| r.shadow);
    Ok(Service {
        name: name.clone(),
        public_paths,
        rules,
        headers,
        unmatched: *unmatched,
        validations,
        signed,
        rbac_shadow: *rbac_shadow,
        has_shadow,
    })
}

/// Header configs already compiled, with their policy: most services have the default one.
type SeenHeaders<'a> = Vec<(&'a HeaderPolicyConfig, HeaderPolicy)>;

/// How many distinct header configs are remembered (each looked for by comparison).
const MAX_SEEN_HEADERS: usize = 8;

/// A service's header policy: compiled, or the one compiled for an equal config (a shared
/// table): building one table per service was a sixth of compiling 10,000 services.
#[inline(never)] // configure-time: see `OUT_OF_LINE`
fn compile_headers<'a>(service: &str, config: &'a HeaderPolicyConfig, seen: &mut SeenHeaders<'a>) -> Result<HeaderPolicy, CompileError> {
    if let Some((_, policy)) = seen.iter().find(|(c, _)| *c == config) {
        return Ok(policy.clone());
    }
    let policy = HeaderPolicy::compile(config).map_err(|e| CompileError::in_service(service, "request_headers.allow", e))?;
    if seen.len() < MAX_SEEN_HEADERS {
        seen.push((config, policy.clone()));
    }
    Ok(policy)
}

/// The rules, each labelled `<service>.<name>` (its own name, or `rules_<index>`) for
/// shadow metrics; two rules of a service may not share a label.
#[inline(never)] // configure-time: see `OUT_OF_LINE`
fn compile_rules(service: &str, configs: &[crate::config::RuleConfig]) -> Result<Vec<Rule>, CompileError> {
    let mut rules: Vec<Rule> = Vec::with_capacity(configs.len());
    for (i, config) in configs.iter().enumerate() {
        let field = format!("rules[{i}]");
        let mut rule = Rule::compile(config).map_err(|e| CompileError::in_service(service, &field, e))?;
        let name = config.name.clone().unwrap_or_else(|| format!("rules_{i}"));
        rule.label = format!("{service}.{name}").into();
        if rules.iter().any(|r| r.label == rule.label) {
            return Err(CompileError::in_service(service, format!("{field}.name"), format!("{name:?} is used twice")));
        }
        rules.push(rule);
    }
    Ok(rules)
}

#[inline(never)] // configure-time: see `OUT_OF_LINE`
fn compile_verifier(auth: &AuthConfig) -> Result<Verifier, CompileError> {
    let AuthConfig { issuer, audience, leeway_secs, keys, jwks } = auth;
    if issuer.is_empty() {
        return Err(CompileError::new("auth", "issuer", "must not be empty"));
    }
    if audience.is_empty() {
        return Err(CompileError::new("auth", "audience", "must not be empty"));
    }
    let leeway_secs = i64::try_from(*leeway_secs)
        .ok()
        .filter(|l| *l <= MAX_LEEWAY_SECS)
        .ok_or_else(|| CompileError::new("auth", "leeway_secs", format!("must be at most {MAX_LEEWAY_SECS}")))?;
    let jwks_issuers = match jwks {
        Some(jwks) => compile_jwks(jwks)?,
        None => Vec::new(),
    };
    let keys = compile_keys(keys, &jwks_issuers)?;
    Ok(Verifier { issuer: issuer.clone(), audience: audience.clone(), leeway_secs, keys, jwks_issuers })
}

#[inline(never)] // configure-time: see `OUT_OF_LINE`
fn compile_jwks(jwks: &JwksConfig) -> Result<Vec<String>, CompileError> {
    let JwksConfig { issuers, report } = jwks;
    if issuers.is_empty() || issuers.iter().any(String::is_empty) {
        return Err(CompileError::new("auth.jwks", "issuers", "list at least one, none empty"));
    }
    if let Some(KeyReportConfig { cluster, authority: _, path }) = report {
        if cluster.is_empty() || !path.starts_with('/') {
            return Err(CompileError::new("auth.jwks", "report", "needs a cluster and an absolute path"));
        }
    }
    Ok(issuers.clone())
}

/// `jwks_issuers` may verify with keys bound to them, and may have none yet: their tokens
/// are then refused until the control plane's first good fetch.
#[inline(never)] // configure-time: see `OUT_OF_LINE`
fn compile_keys(configs: &[KeyConfig], jwks_issuers: &[String]) -> Result<Vec<VerifyingKey>, CompileError> {
    if configs.is_empty() && jwks_issuers.is_empty() {
        return Err(CompileError::new("auth", "keys", "needs at least one key"));
    }
    if let Some((index, key)) = configs.iter().enumerate().find(|(_, k)| k.issuer.as_ref().is_some_and(|i| !jwks_issuers.contains(i))) {
        return Err(CompileError::new(format!("auth.keys[{index}]"), "issuer", format!("{:?} is not in auth.jwks.issuers", key.issuer.as_deref().unwrap_or_default())));
    }
    // One owner for the key rules, the set-wide ones (one kid each, never an HMAC secret
    // beside public keys) included: token::compile_key_set.
    compile_key_set(configs.iter().map(KeySource::from)).map_err(|e| {
        let item = match &e.kid {
            Some(kid) => format!("auth.keys[{}] (kid {kid:?})", e.index),
            None => format!("auth.keys[{}]", e.index),
        };
        CompileError::new(item, e.error.field(), e.error)
    })
}

fn compile_revocation(rev: &RevocationConfig) -> Result<(), CompileError> {
    let RevocationConfig { cluster, authority: _, path, poll_interval_ms, wait_ms } = rev;
    if cluster.is_empty() || !path.starts_with('/') || *poll_interval_ms == 0 {
        return Err(CompileError::new("revocation", "", "needs a cluster, an absolute path and a poll interval"));
    }
    if *wait_ms > crate::feed_poll::MAX_WAIT_MS {
        return Err(CompileError::new("revocation", "wait_ms", format!("at most {} ms", crate::feed_poll::MAX_WAIT_MS)));
    }
    Ok(())
}

#[inline(never)] // configure-time: see `OUT_OF_LINE`
fn compile_composites<S: Borrow<ServiceConfig>>(configs: &[CompositeConfig], services: &[S]) -> Result<Vec<Rc<Composite>>, CompileError> {
    if configs.len() > MAX_COMPOSITES {
        return Err(CompileError::new("composites", "", format!("at most {MAX_COMPOSITES} composite routes")));
    }
    if configs.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = services.iter().map(|s| s.borrow().name.as_str()).collect();
    let mut compiled: Vec<Rc<Composite>> = Vec::with_capacity(configs.len());
    for (i, config) in configs.iter().enumerate() {
        let item = format!("composites[{i}] ({})", config.name);
        let composite = Composite::compile(config, &names).map_err(|e| CompileError::new(&item, e.field, e.reason))?;
        if compiled.iter().any(|c| c.name == composite.name) {
            return Err(CompileError::new(&item, "name", "is taken by another composite route"));
        }
        compiled.push(Rc::new(composite));
    }
    Ok(compiled)
}

#[inline(never)] // configure-time: see `OUT_OF_LINE`
fn compile_cache_routes<S: Borrow<ServiceConfig>, P: AsRef<str>>(
    configs: &[CacheRouteConfig],
    services: &[S],
    prefixes: &[(P, usize)],
) -> Result<Vec<(Rc<CacheRoute>, String)>, CompileError> {
    if configs.len() > MAX_CACHE_ROUTES {
        return Err(CompileError::new("response_cache", "", format!("at most {MAX_CACHE_ROUTES} cached routes")));
    }
    let mut compiled: Vec<(Rc<CacheRoute>, String)> = Vec::with_capacity(configs.len());
    for (i, config) in configs.iter().enumerate() {
        let item = format!("response_cache[{i}] ({})", config.name);
        let route = CacheRoute::compile(config).map_err(|e| CompileError::new(&item, e.field, e.reason))?;
        // A miss is fetched from the service Envoy routes the path to: the longest prefix
        // it is under (two distinct prefixes a path is under differ in length).
        let service = prefixes
            .iter()
            .filter(|(prefix, _)| is_under_prefix(&config.path, prefix.as_ref()))
            .max_by_key(|(prefix, _)| prefix.as_ref().len())
            .and_then(|(_, index)| services.get(*index))
            .map(Borrow::borrow)
            .ok_or_else(|| CompileError::new(&item, "path", "is under no service's prefix"))?;
        if compiled.iter().any(|(r, _)| r.name == route.name) {
            return Err(CompileError::new(&item, "name", "is taken by another cached route"));
        }
        compiled.push((Rc::new(route), service.name.clone()));
    }
    Ok(compiled)
}

#[inline(never)] // configure-time: see `OUT_OF_LINE`
fn compile_webhooks(configs: &[WebhookConfig]) -> Result<Vec<(String, Vec<u8>)>, CompileError> {
    let mut webhooks = Vec::with_capacity(configs.len());
    for (i, WebhookConfig { path, stripe_secret }) in configs.iter().enumerate() {
        let item = format!("webhooks[{i}]");
        if !is_normalized(path) {
            return Err(CompileError::new(&item, "path", PatternError::NotNormalized));
        }
        if stripe_secret.is_empty() {
            return Err(CompileError::new(&item, "stripe_secret", "must not be empty"));
        }
        webhooks.push((path.clone(), stripe_secret.as_bytes().to_vec()));
    }
    Ok(webhooks)
}

impl Service {
    /// Public only if every reading of the path is (a public path's `;params` or escaped
    /// variant is served as public only where both forms are).
    pub fn is_public(&self, readings: &PathReadings<'_>) -> bool {
        readings.each().all(|path| self.public_paths.iter().any(|p| p.matches(path)))
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
