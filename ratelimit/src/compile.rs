//! `global_rate_limit` checked and compiled: every figure positive, names unique, the salt
//! present and not a known fallback. An error names the field, as the registry's do.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::config::{GlobalRateLimitConfig, LimitConfig, Per};
use crate::fail_mode::FailMode;
use crate::gcra::Rate;
use crate::key::AnonymousSalt;

/// `field` is the path below `global_rate_limit`, e.g. `limits[login].requests`.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("global_rate_limit.{field}: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

fn error(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError { field: field.into(), reason: reason.into() }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledLimits {
    pub salt: AnonymousSalt,
    pub timeout_ms: u64,
    pub unlimited_roles: Vec<String>,
    pub local_fallback_keys: usize,
    pub limits: Vec<CompiledLimit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledLimit {
    pub name: String,
    pub rate: Rate,
    pub routes: Vec<String>,
    pub per: Per,
    pub shadow: bool,
    pub count_refused: bool,
    pub fail_mode: Option<FailMode>,
    /// `None`: unlimited for that role.
    pub roles: BTreeMap<String, Option<Rate>>,
}

/// The longest an Envoy may wait for the limiter: past this the limiter would add more to a
/// request than most backends take.
pub const MAX_TIMEOUT_MS: u64 = 1000;

pub fn compile(config: &GlobalRateLimitConfig, env: impl Fn(&str) -> Option<String>) -> Result<CompiledLimits, ConfigError> {
    let GlobalRateLimitConfig { salt, salt_env, timeout_ms, unlimited_roles, local_fallback_keys, limits } = config;
    let salt = match (salt, salt_env) {
        (Some(_), Some(_)) => return Err(error("salt", "give salt or salt_env, not both")),
        (Some(literal), None) => AnonymousSalt::new(literal).map_err(|e| error("salt", e.to_string()))?,
        (None, Some(var)) => {
            let value = env(var).ok_or_else(|| error("salt_env", format!("{var} is not set in the control plane's environment")))?;
            AnonymousSalt::new(&value).map_err(|e| error("salt_env", format!("{var} {e}")))?
        }
        (None, None) => return Err(error("salt", "required (or salt_env): anonymous callers are counted by a salted hash of their address")),
    };
    if *timeout_ms == 0 || *timeout_ms > MAX_TIMEOUT_MS {
        return Err(error("timeout_ms", format!("must be 1..={MAX_TIMEOUT_MS}")));
    }
    if *local_fallback_keys == 0 {
        return Err(error("local_fallback_keys", "must be positive"));
    }
    if limits.is_empty() {
        return Err(error("limits", "must name at least one limit"));
    }
    let mut compiled: Vec<CompiledLimit> = Vec::with_capacity(limits.len());
    for (i, limit) in limits.iter().enumerate() {
        let limit = compile_limit(i, limit)?;
        if compiled.iter().any(|l| l.name == limit.name) {
            return Err(error(format!("limits[{}].name", limit.name), "is used twice"));
        }
        compiled.push(limit);
    }
    Ok(CompiledLimits {
        salt,
        timeout_ms: *timeout_ms,
        unlimited_roles: unlimited_roles.clone(),
        local_fallback_keys: *local_fallback_keys,
        limits: compiled,
    })
}

fn compile_limit(index: usize, limit: &LimitConfig) -> Result<CompiledLimit, ConfigError> {
    let LimitConfig { name, requests, period_ms, burst, routes, per, shadow, count_refused, fail_mode, roles } = limit;
    let name_ok = !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !name_ok {
        return Err(error(format!("limits[{index}].name"), "must be 1-64 of [a-z0-9_-]"));
    }
    let field = |f: &str| format!("limits[{name}].{f}");
    let limit_rate = rate(*requests, *period_ms, *burst, &field)?;
    for (i, route) in routes.iter().enumerate() {
        if !route.starts_with('/') {
            return Err(error(field(&format!("routes[{i}]")), "must start with /"));
        }
    }
    let mut role_rates = BTreeMap::new();
    for (role, over) in roles {
        let role_field = |f: &str| field(&format!("roles.{role}.{f}"));
        let role_rate = match (over.unlimited, over.requests, over.burst) {
            (true, None, None) => None,
            (true, _, _) => return Err(error(role_field("unlimited"), "an unlimited role takes no requests or burst")),
            (false, None, None) => return Err(error(role_field("requests"), "give requests, burst or unlimited: true")),
            (false, role_requests, role_burst) => {
                let role_requests = role_requests.unwrap_or(*requests);
                // A role's own figure is its own burst, as for the limit itself.
                let role_burst = role_burst.or(over.requests).or(*burst);
                Some(rate(role_requests, *period_ms, role_burst, &role_field)?)
            }
        };
        role_rates.insert(role.clone(), role_rate);
    }
    Ok(CompiledLimit {
        name: name.clone(),
        rate: limit_rate,
        routes: routes.clone(),
        per: *per,
        shadow: *shadow,
        count_refused: *count_refused,
        fail_mode: *fail_mode,
        roles: role_rates,
    })
}

fn rate(requests: u32, period_ms: u64, burst: Option<u32>, field: &dyn Fn(&str) -> String) -> Result<Rate, ConfigError> {
    if requests == 0 {
        return Err(error(field("requests"), "must be positive"));
    }
    if period_ms < 1000 {
        return Err(error(field("period_ms"), "must be at least 1000"));
    }
    if burst == Some(0) {
        return Err(error(field("burst"), "must be positive"));
    }
    Rate::new(requests, period_ms, burst.unwrap_or(requests)).ok_or_else(|| error(field("period_ms"), "is too large"))
}
