//! The compiled, validated form of a [`FilterConfig`]: what the filter consults per request.

use std::collections::BTreeMap;

use crate::config::{FilterConfig, RevocationConfig, RoleConfig};
use crate::headers::HeaderPolicy;
use crate::path::{is_normalized, is_under_prefix, PathPattern, PatternError};
use crate::rbac::{compile_roles, Rule};
use crate::token::{compile_key, Verifier};

/// A config the filter can enforce. Only [`Policy::compile`] makes one, so holding a
/// `Policy` means every rule in it was checked.
#[derive(Debug, Clone)]
pub struct Policy {
    pub config_version: String,
    services: Vec<Service>,
    /// (prefix, index into `services`), longest prefix first, so the first hit is the one
    /// Envoy's route table picks too.
    prefixes: Vec<(String, usize)>,
    pub verifier: Verifier,
    pub roles: BTreeMap<String, RoleConfig>,
    pub identity_key: Option<Vec<u8>>,
    pub revocation: Option<RevocationConfig>,
    pub token_cache_entries: usize,
    /// Header policy for paths no service owns (Envoy answers them with a 404).
    pub unrouted_headers: HeaderPolicy,
    /// (exact path, Stripe signing secret) of webhook endpoints checked at the edge.
    pub webhooks: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub public_paths: Vec<PathPattern>,
    pub rules: Vec<Rule>,
    pub headers: HeaderPolicy,
}

/// A config error, naming the item and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{item}: {field}: {reason}")]
pub struct CompileError {
    pub item: String,
    pub field: String,
    pub reason: String,
}

impl CompileError {
    fn new(item: impl Into<String>, field: impl Into<String>, reason: impl ToString) -> Self {
        Self { item: item.into(), field: field.into(), reason: reason.to_string() }
    }
}

impl Policy {
    pub fn compile(config: &FilterConfig) -> Result<Self, CompileError> {
        let mut services = Vec::with_capacity(config.services.len());
        let mut prefixes: Vec<(String, usize)> = Vec::new();
        for (index, svc) in config.services.iter().enumerate() {
            services.push(compile_service(config, index, svc, &mut prefixes)?);
        }
        prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));

        let auth = &config.auth;
        if auth.issuer.is_empty() {
            return Err(CompileError::new("auth", "issuer", "must not be empty"));
        }
        if auth.audience.is_empty() {
            return Err(CompileError::new("auth", "audience", "must not be empty"));
        }
        if auth.keys.is_empty() {
            return Err(CompileError::new("auth", "keys", "needs at least one key"));
        }
        let mut keys = Vec::with_capacity(auth.keys.len());
        for (i, key) in auth.keys.iter().enumerate() {
            let item = match &key.kid {
                Some(kid) => format!("auth.keys[{i}] (kid {kid:?})"),
                None => format!("auth.keys[{i}]"),
            };
            if auth.keys[..i].iter().any(|k| k.kid == key.kid) {
                return Err(CompileError::new(item, "kid", "two keys with the same kid"));
            }
            keys.push(compile_key(key).map_err(|reason| {
                let (field, reason) = reason.split_once(": ").unwrap_or(("key", reason.as_str()));
                CompileError::new(&item, field, reason)
            })?);
        }
        let leeway_secs = i64::try_from(auth.leeway_secs)
            .ok()
            .filter(|l| *l <= 3600)
            .ok_or_else(|| CompileError::new("auth", "leeway_secs", "must be at most 3600"))?;
        let roles = compile_roles(&config.roles).map_err(|e| CompileError::new("roles", "", e))?;
        if let Some(key) = &config.identity_signing_key {
            if key.len() < 32 {
                return Err(CompileError::new("identity_signing_key", "", "must be at least 32 bytes"));
            }
        }
        if let Some(rev) = &config.revocation {
            if rev.cluster.is_empty() || !rev.path.starts_with('/') || rev.poll_interval_ms == 0 {
                return Err(CompileError::new("revocation", "", "needs a cluster, an absolute path and a poll interval"));
            }
        }
        let mut webhooks = Vec::new();
        for (i, hook) in config.webhooks.iter().enumerate() {
            let item = format!("webhooks[{i}]");
            if !is_normalized(&hook.path) {
                return Err(CompileError::new(&item, "path", PatternError::NotNormalized));
            }
            if hook.stripe_secret.is_empty() {
                return Err(CompileError::new(&item, "stripe_secret", "must not be empty"));
            }
            webhooks.push((hook.path.clone(), hook.stripe_secret.as_bytes().to_vec()));
        }
        Ok(Self {
            webhooks,
            config_version: config.config_version.clone(),
            services,
            prefixes,
            verifier: Verifier {
                issuer: auth.issuer.clone(),
                audience: auth.audience.clone(),
                leeway_secs,
                keys,
            },
            roles,
            identity_key: config.identity_signing_key.as_ref().map(|k| k.as_bytes().to_vec()),
            revocation: config.revocation.clone(),
            token_cache_entries: config.token_cache_entries,
            unrouted_headers: HeaderPolicy::open(),
        })
    }

    /// The service Envoy routes `path` to, by the longest whole-segment prefix.
    pub fn service_for(&self, path: &str) -> Option<&Service> {
        self.prefixes
            .iter()
            .find(|(prefix, _)| is_under_prefix(path, prefix))
            .and_then(|(_, index)| self.services.get(*index))
    }
}

fn compile_service(
    config: &FilterConfig,
    index: usize,
    svc: &crate::config::ServiceConfig,
    prefixes: &mut Vec<(String, usize)>,
) -> Result<Service, CompileError> {
    let item = format!("service \"{}\"", svc.name);
    if svc.name.is_empty() {
        return Err(CompileError::new(format!("services[{index}]"), "name", "must not be empty"));
    }
    if svc.prefixes.is_empty() {
        return Err(CompileError::new(&item, "prefixes", "needs at least one prefix"));
    }
    for (i, prefix) in svc.prefixes.iter().enumerate() {
        if !is_normalized(prefix) {
            return Err(CompileError::new(&item, format!("prefixes[{i}]"), PatternError::NotNormalized));
        }
        if let Some((_, other)) = prefixes.iter().find(|(p, _)| p == prefix) {
            let other_name = &config.services[*other].name;
            return Err(CompileError::new(
                &item,
                format!("prefixes[{i}]"),
                format!("{prefix} is already routed to service \"{other_name}\""),
            ));
        }
        prefixes.push((prefix.clone(), index));
    }
    let public_paths = svc
        .public_paths
        .iter()
        .enumerate()
        .map(|(i, p)| PathPattern::parse(p).map_err(|e| CompileError::new(&item, format!("public_paths[{i}]"), e)))
        .collect::<Result<Vec<_>, _>>()?;
    let rules = svc
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| Rule::compile(r).map_err(|e| CompileError::new(&item, format!("rules[{i}]"), e)))
        .collect::<Result<Vec<_>, _>>()?;
    let headers = HeaderPolicy::compile(&svc.request_headers)
        .map_err(|e| CompileError::new(&item, "request_headers.allow", e))?;
    Ok(Service { name: svc.name.clone(), public_paths, rules, headers })
}

impl Service {
    pub fn is_public(&self, path: &str) -> bool {
        self.public_paths.iter().any(|p| p.matches(path))
    }
}
