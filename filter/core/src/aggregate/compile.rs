//! [`CompositeConfig`] -> [`Composite`]: every rule about a valid composite route.

use std::collections::BTreeSet;

use super::config::{CompositeConfig, SourceConfig, MAX_DEADLINE_MS, MAX_SOURCES, MAX_TOTAL_BYTES};
use super::template::{PathTemplate, UnsafeParam};
use crate::config::{service_cluster, HeaderPolicyConfig, RuleConfig, Unmatched};
use crate::headers::HeaderPolicy;
use crate::policy::Service;
use crate::rbac::{Params, Rule};

/// A composite route the filter can answer.
#[derive(Debug, Clone)]
pub struct Composite {
    pub name: String,
    /// Matches the route's path (GET and HEAD) and captures its params.
    matcher: Rule,
    /// What authentication and RBAC judge the route by: its permission as the one rule,
    /// or any valid token when it has none. Never public.
    pub service: Service,
    pub deadline_ms: u64,
    pub max_source_bytes: usize,
    pub max_total_bytes: usize,
    pub sources: Vec<Source>,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub key: String,
    pub cluster: String,
    /// The `:authority` sent: the service's name.
    pub authority: String,
    template: PathTemplate,
    pub required: bool,
    /// Its own timeout, never past the route's deadline (every source starts at once).
    pub timeout_ms: u64,
    pub fallback: serde_json::Value,
}

/// One service call a request makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub source: usize,
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
}

/// A composite refused: the field at fault (`sources[1].path`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct CompositeError {
    pub field: String,
    pub reason: String,
}

fn refuse(field: impl Into<String>, reason: impl ToString) -> CompositeError {
    CompositeError { field: field.into(), reason: reason.to_string() }
}

/// The permission the matcher is compiled with: never checked (the route's own permission
/// is its service's rule), only there because a rule carries one.
const MATCH_ONLY: &str = "composite:match";

impl Composite {
    /// `services` are the names of the services the config routes.
    #[inline(never)] // configure-time (policy.rs `OUT_OF_LINE`)
    pub fn compile(config: &CompositeConfig, services: &[&str]) -> Result<Self, CompositeError> {
        let CompositeConfig { name, path, permission, deadline_ms, max_source_bytes, max_total_bytes, sources } = config;
        if !is_route_name(name) {
            return Err(refuse("name", "must be lower-case letters, digits and '-', starting with a letter"));
        }
        let rule = |permission: &str| {
            Rule::compile(&RuleConfig { method: String::from("GET"), path: path.clone(), permission: permission.to_owned(), name: None, shadow: false })
        };
        let matcher = rule(MATCH_ONLY).map_err(|e| refuse("path", e))?;
        let route_params = route_params(path);
        if *deadline_ms == 0 || *deadline_ms > MAX_DEADLINE_MS {
            return Err(refuse("deadline_ms", format!("must be 1 to {MAX_DEADLINE_MS}")));
        }
        if *max_total_bytes == 0 || *max_total_bytes > MAX_TOTAL_BYTES {
            return Err(refuse("max_total_bytes", format!("must be 1 to {MAX_TOTAL_BYTES}")));
        }
        if *max_source_bytes == 0 || max_source_bytes > max_total_bytes {
            return Err(refuse("max_source_bytes", "must be at least 1 and at most max_total_bytes"));
        }
        if sources.is_empty() || sources.len() > MAX_SOURCES {
            return Err(refuse("sources", format!("needs 1 to {MAX_SOURCES} sources")));
        }
        let mut keys = BTreeSet::new();
        let mut compiled = Vec::with_capacity(sources.len());
        for (i, source) in sources.iter().enumerate() {
            let compiled_source = compile_source(source, &route_params, services, *deadline_ms).map_err(|e| CompositeError {
                field: format!("sources[{i}] ({}).{}", source.name, e.field),
                reason: e.reason,
            })?;
            if compiled_source.key == "_metadata" || !keys.insert(compiled_source.key.clone()) {
                let reason = format!("key {:?} is taken (by another source or _metadata)", compiled_source.key);
                return Err(refuse(format!("sources[{i}] ({}).key", source.name), reason));
            }
            compiled.push(compiled_source);
        }
        let headers = HeaderPolicy::compile(&HeaderPolicyConfig::default()).map_err(|e| refuse("path", e))?;
        let (rules, unmatched) = match permission {
            Some(p) => (vec![rule(p).map_err(|e| refuse("permission", e))?], Unmatched::Deny),
            None => (Vec::new(), Unmatched::Authenticated),
        };
        let service = Service {
            name: format!("composite:{name}"),
            public_paths: Vec::new(),
            rules,
            headers,
            unmatched,
            validations: Vec::new(),
            // A composite route declares neither signatures nor shadow rules (its registry
            // entry has no such field).
            signed: Default::default(),
            rbac_shadow: false,
            has_shadow: false,
        };
        Ok(Self {
            name: name.clone(),
            matcher,
            service,
            deadline_ms: *deadline_ms,
            max_source_bytes: *max_source_bytes,
            max_total_bytes: *max_total_bytes,
            sources: compiled,
        })
    }

    /// The route's params if `path` (no query) is this route's, for any method.
    pub fn matches<'p>(&'p self, path: &'p str) -> Option<Params<'p>> {
        self.matcher.matches("GET", path)
    }

    /// The calls one request makes, every template filled in with its params.
    pub fn calls(&self, params: &Params<'_>) -> Result<Vec<Call>, UnsafeParam> {
        self.sources
            .iter()
            .enumerate()
            .map(|(index, source)| {
                Ok(Call {
                    source: index,
                    cluster: source.cluster.clone(),
                    authority: source.authority.clone(),
                    path: source.template.render(params)?,
                    timeout_ms: source.timeout_ms,
                })
            })
            .collect()
    }
}

fn is_route_name(name: &str) -> bool {
    name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn route_params(path: &str) -> Vec<&str> {
    path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect()
}

fn compile_source(source: &SourceConfig, route_params: &[&str], services: &[&str], deadline_ms: u64) -> Result<Source, CompositeError> {
    let SourceConfig { name, key, service, path, required, timeout_ms, fallback } = source;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(refuse("name", "must be letters, digits, '_' and '-'"));
    }
    if !services.contains(&service.as_str()) {
        return Err(refuse("service", format!("no service {service:?} in the registry")));
    }
    let template = PathTemplate::compile(path, route_params).map_err(|e| refuse("path", e))?;
    let timeout_ms = match *timeout_ms {
        None => deadline_ms,
        Some(t) if (1..=deadline_ms).contains(&t) => t,
        Some(_) => return Err(refuse("timeout_ms", format!("must be 1 to the route's deadline_ms ({deadline_ms})"))),
    };
    if *required && fallback.is_some() {
        return Err(refuse("fallback", "a required source has no fallback: its failure fails the route"));
    }
    Ok(Source {
        name: name.clone(),
        key: key.clone().unwrap_or_else(|| name.clone()),
        cluster: service_cluster(service),
        authority: service.clone(),
        template,
        required: *required,
        timeout_ms,
        fallback: fallback.clone().unwrap_or(serde_json::Value::Null),
    })
}
