//! Which limits one request is checked against, from the descriptor Envoy sends.
//!
//! Envoy sends one descriptor per request with the entries the translation asks for: the
//! path, the client address, and the identity headers the Stagedoor filter set after
//! verifying the token (`user`, `tenant`, `role`; absent for anonymous requests, since the
//! filter removes any client copy). Nothing else in the descriptor is trusted.

use crate::compile::{CompiledLimit, CompiledLimits};
use crate::config::Per;
use crate::decide::KeyedLimit;
use crate::fail_mode::{default_fail_mode, FailMode, DEFAULT_CLOSED};
use crate::key::{redis_key, Subject};

/// Descriptor entry keys, shared with the translation.
pub const PATH: &str = "path";
pub const REMOTE_ADDRESS: &str = "remote_address";
pub const USER: &str = "user";
pub const TENANT: &str = "tenant";
pub const ROLE: &str = "role";

/// What the descriptor says about the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestView<'a> {
    pub path: &'a str,
    pub remote_address: Option<&'a str>,
    pub user: Option<&'a str>,
    pub tenant: Option<&'a str>,
    pub role: Option<&'a str>,
}

impl<'a> RequestView<'a> {
    pub fn from_entries(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> RequestView<'a> {
        let mut view = RequestView::default();
        for (key, value) in entries {
            match key {
                // The query is not part of a route.
                PATH => view.path = value.split(['?', '#']).next().unwrap_or(value),
                REMOTE_ADDRESS => view.remote_address = Some(value),
                USER if !value.is_empty() => view.user = Some(value),
                TENANT => view.tenant = Some(value),
                ROLE if !value.is_empty() => view.role = Some(value),
                _ => {}
            }
        }
        view
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `(limit name, keyed limit)`, in registry order.
    pub limits: Vec<(String, KeyedLimit)>,
    /// The strictest of the matching limits' modes: closed over local fallback over open.
    pub fail_mode: FailMode,
}

/// Segment-wise prefix: `/api/v1/auth` covers `/api/v1/auth/login`, not `/api/v1/authors`.
pub fn path_under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

pub fn plan(compiled: &CompiledLimits, request: &RequestView<'_>) -> Plan {
    let mut fail_mode = FailMode::Open;
    let mut limits = Vec::new();
    let unlimited_role = request.role.is_some_and(|role| compiled.unlimited_roles.iter().any(|r| r == role));
    for limit in &compiled.limits {
        let applies = limit.routes.is_empty() || limit.routes.iter().any(|prefix| path_under(request.path, prefix));
        if !applies || unlimited_role {
            continue;
        }
        let Some(subject) = subject(compiled, limit, request) else { continue };
        let rate = match request.role.and_then(|role| limit.roles.get(role)) {
            Some(None) => continue, // unlimited for this role
            Some(Some(rate)) => *rate,
            None => limit.rate,
        };
        fail_mode = strictest(fail_mode, limit.fail_mode.unwrap_or_else(|| default_fail_mode(request.path)));
        let keyed = KeyedLimit { key: redis_key(&limit.name, &subject), rate, shadow: limit.shadow, count_refused: limit.count_refused };
        limits.push((limit.name.clone(), keyed));
    }
    Plan { limits, fail_mode }
}

/// The path prefixes whose requests fail closed when the limiter itself cannot be reached
/// (Envoy's side of the fail mode): a limit's routes when it says `closed` ("/" for all
/// routes), and /api/v1/auth (or the limit's routes under it) when it says nothing.
pub fn closed_prefixes(compiled: &CompiledLimits) -> Vec<String> {
    let mut prefixes: Vec<String> = Vec::new();
    for limit in &compiled.limits {
        let routes: Vec<&str> = if limit.routes.is_empty() { vec!["/"] } else { limit.routes.iter().map(String::as_str).collect() };
        for route in routes {
            let closed = match limit.fail_mode {
                Some(FailMode::Closed) => Some(route),
                Some(FailMode::Open | FailMode::LocalFallback) => None,
                None if default_fail_mode(route) == FailMode::Closed => Some(route),
                // All routes, default mode: the auth ones among them fail closed.
                None if path_under(DEFAULT_CLOSED, route) => Some(DEFAULT_CLOSED),
                None => None,
            };
            if let Some(prefix) = closed {
                let prefix = if prefix.len() > 1 { prefix.trim_end_matches('/') } else { prefix };
                if !prefixes.iter().any(|p| p == prefix) {
                    prefixes.push(prefix.to_owned());
                }
            }
        }
    }
    prefixes.sort();
    prefixes
}

fn subject(compiled: &CompiledLimits, limit: &CompiledLimit, request: &RequestView<'_>) -> Option<Subject> {
    let user = request.user.map(|user| Subject::User { tenant: request.tenant.unwrap_or_default().to_owned(), user: user.to_owned() });
    let address = || request.remote_address.map(|address| Subject::anonymous(&compiled.salt, address));
    match limit.per {
        Per::User => user,
        Per::Address => match user {
            Some(_) => None,
            None => address(),
        },
        Per::UserOrAddress => user.or_else(address),
    }
}

fn strictest(a: FailMode, b: FailMode) -> FailMode {
    let rank = |m: FailMode| match m {
        FailMode::Open => 0,
        FailMode::LocalFallback => 1,
        FailMode::Closed => 2,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}
