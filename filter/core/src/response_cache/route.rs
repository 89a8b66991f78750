//! A compiled cache route, and the key of a request to it.

use super::config::{CacheRouteConfig, MAX_STALE_SECS, MAX_TIMEOUT_MS, MAX_TTL_SECS, MAX_VARY};
use crate::config::RuleConfig;
use crate::defaults::IDENTITY_HEADERS;
use crate::headers::HeaderPolicy;
use crate::rbac::Rule;

#[derive(Debug, Clone)]
pub struct CacheRoute {
    pub name: String,
    matcher: Rule,
    pub ttl_ms: u64,
    /// How long past the ttl an entry is answered stale while it is refreshed (0: not).
    pub stale_ms: u64,
    /// Sorted, so the key and the fetched query list them in one order.
    vary_query: Vec<String>,
    /// Lower-cased, sorted.
    vary_headers: Vec<String>,
    pub per_user: bool,
    pub per_role: bool,
    pub timeout_ms: u64,
}

/// A cache route refused: the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct CacheRouteError {
    pub field: String,
    pub reason: String,
}

fn refuse(field: &str, reason: impl ToString) -> CacheRouteError {
    CacheRouteError { field: field.to_owned(), reason: reason.to_string() }
}

/// What a request to a cached route is, once authenticated: everything its key holds.
#[derive(Debug, Clone, Copy)]
pub struct CacheRequest<'a> {
    pub method: &'a str,
    /// The path as Envoy normalized it, no query.
    pub path: &'a str,
    /// The raw query string (without `?`), or "".
    pub query: &'a str,
    pub tenant: &'a str,
    pub subject: &'a str,
    /// The verified role and permissions (what a per-role route keys on).
    pub role: &'a str,
    pub permissions: &'a [String],
    pub headers: &'a [(&'a str, &'a str)],
}

/// A cache key, built field by field with each field's length first, so no two different
/// requests (tenant `a|b` user `c` against tenant `a` user `b|c`) can spell the same key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub String);

impl CacheRoute {
    pub fn compile(config: &CacheRouteConfig) -> Result<Self, CacheRouteError> {
        let CacheRouteConfig { name, path, ttl_secs, vary_query, vary_headers, per_user, per_role, timeout_ms, stale_while_revalidate } = config;
        if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(refuse("name", "must be lower-case letters, digits and '-'"));
        }
        let matcher = Rule::compile(&RuleConfig { method: "GET".into(), path: path.clone(), permission: "cache:match".into(), name: None, shadow: false })
            .map_err(|e| refuse("path", e))?;
        if *ttl_secs == 0 || *ttl_secs > MAX_TTL_SECS {
            return Err(refuse("ttl_secs", format!("must be 1 to {MAX_TTL_SECS}")));
        }
        if *stale_while_revalidate > MAX_STALE_SECS {
            return Err(refuse("stale_while_revalidate", format!("must be 0 to {MAX_STALE_SECS} seconds")));
        }
        if *timeout_ms == 0 || *timeout_ms > MAX_TIMEOUT_MS {
            return Err(refuse("timeout_ms", format!("must be 1 to {MAX_TIMEOUT_MS}")));
        }
        if vary_query.len() > MAX_VARY || vary_headers.len() > MAX_VARY {
            return Err(refuse("vary_query", format!("at most {MAX_VARY} params and {MAX_VARY} headers")));
        }
        if let Some(bad) = vary_query.iter().find(|q| q.is_empty() || !q.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))) {
            return Err(refuse("vary_query", format!("{bad:?} is not a plain query param name")));
        }
        let open = HeaderPolicy::open();
        for header in vary_headers {
            let lower = header.to_ascii_lowercase();
            let credential = matches!(lower.as_str(), "authorization" | "cookie" | "proxy-authorization");
            let identity = IDENTITY_HEADERS.contains(&lower.as_str());
            let blocked = !matches!(open.request_header(&lower), crate::headers::Verdict::Keep);
            if lower.is_empty() || credential || identity || blocked || lower.starts_with(':') {
                return Err(refuse("vary_headers", format!("{header:?} cannot select a cached answer (identity, credential or blocked)")));
            }
        }
        let mut vary_query = vary_query.clone();
        vary_query.sort();
        vary_query.dedup();
        let mut vary_headers: Vec<String> = vary_headers.iter().map(|h| h.to_ascii_lowercase()).collect();
        vary_headers.sort();
        vary_headers.dedup();
        Ok(Self {
            name: name.clone(),
            matcher,
            ttl_ms: ttl_secs * 1000,
            stale_ms: stale_while_revalidate * 1000,
            vary_query,
            vary_headers,
            per_user: *per_user,
            per_role: *per_role,
            timeout_ms: *timeout_ms,
        })
    }

    /// Does this route cache `method` on `path` (no query)? GET and HEAD only.
    pub fn covers(&self, method: &str, path: &str) -> bool {
        Self::caches_method(method) && self.covers_path(path)
    }

    /// GET and HEAD are cached; any other method on a cached path goes upstream.
    pub fn caches_method(method: &str) -> bool {
        matches!(method, "GET" | "HEAD")
    }

    /// Is `path` (no query) this route's, whatever the method? (A POST there is not
    /// cached, and is answered `X-Cache: BYPASS`.)
    pub fn covers_path(&self, path: &str) -> bool {
        self.matcher.matches("GET", path).is_some()
    }

    /// Whether a response's `Vary` names only headers this route declared.
    pub fn declares_vary(&self, name: &str) -> bool {
        self.vary_headers.iter().any(|h| h.eq_ignore_ascii_case(name.trim()))
    }

    /// The declared query params of `query`, sorted by name then value, as sent upstream.
    fn declared_query<'q>(&self, query: &'q str) -> Vec<(&'q str, &'q str)> {
        let mut pairs: Vec<(&str, &str)> = query
            .split('&')
            .filter_map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                self.vary_query.iter().any(|q| q == name).then_some((name, value))
            })
            .collect();
        pairs.sort();
        pairs
    }

    /// The request target a miss fetches: the path and only the declared params, sorted.
    /// The key below holds every part of it, so one key is always one upstream request.
    pub fn fetch_target(&self, request: &CacheRequest<'_>) -> String {
        let pairs = self.declared_query(request.query);
        if pairs.is_empty() {
            return request.path.to_owned();
        }
        let query: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v}")).collect();
        format!("{}?{}", request.path, query.join("&"))
    }

    /// The declared headers the request carries, as sent upstream (lower-case names).
    pub fn vary_values<'r>(&self, request: &CacheRequest<'r>) -> Vec<(&str, String)> {
        self.vary_headers
            .iter()
            .filter_map(|name| {
                let values: Vec<&str> = request.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| *v).collect();
                (!values.is_empty()).then(|| (name.as_str(), values.join(",")))
            })
            .collect()
    }

    /// The key: route, verified tenant, verified subject on a per-user route, verified role
    /// and permissions (sorted) on a per-role route, method, the
    /// fetched target (path and declared params) and the declared headers. Nothing else of
    /// the request takes part, and nothing a client says about who it is.
    pub fn key(&self, request: &CacheRequest<'_>) -> CacheKey {
        let mut key = String::new();
        let mut field = |value: &str| {
            key.push_str(&value.len().to_string());
            key.push(':');
            key.push_str(value);
        };
        field(&self.name);
        field(request.tenant);
        field(if self.per_user { request.subject } else { "" });
        if self.per_role {
            field(request.role);
            let mut permissions: Vec<&str> = request.permissions.iter().map(String::as_str).collect();
            permissions.sort_unstable();
            field(&permissions.len().to_string());
            for permission in permissions {
                field(permission);
            }
        } else {
            field("");
        }
        field(request.method);
        field(&self.fetch_target(request));
        for (name, value) in self.vary_values(request) {
            field(name);
            field(&value);
        }
        CacheKey(key)
    }
}
