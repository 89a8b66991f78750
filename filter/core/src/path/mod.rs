//! Path matching on whole segments, with no regular expressions built from config strings.
//!
//! Paths reach the filter after Envoy's own normalization (the control plane turns on
//! `normalize_path`, `merge_slashes` and rejects escaped slashes). Which service a path
//! belongs to is decided on the path as Envoy routes it ([`is_under_prefix`]); within a
//! service, rules and public paths judge every reading a backend may make of it
//! ([`PathReadings`]). The query string never takes part.

use crate::fast_bytes::{bytes_eq, starts_with};

mod readings;
pub use readings::{segment_eq, PathReadings, PathRefusal};

/// The path part of a request target: everything before `?` or `#`.
pub fn strip_query(target: &str) -> &str {
    let end = target.bytes().position(|b| b == b'?' || b == b'#').unwrap_or(target.len());
    &target[..end]
}

/// Does `path` equal `prefix` or continue it with a `/`? This is Envoy's
/// `path_separated_prefix` semantics, so the filter and the route table agree on which
/// service a path belongs to: `/api/v1/venues` matches `/api/v1/venues` and
/// `/api/v1/venues/1`, never `/api/v1/venuesX`.
pub fn is_under_prefix(path: &str, prefix: &str) -> bool {
    if !starts_with(path, prefix) {
        return false;
    }
    let rest = &path.as_bytes()[prefix.len()..];
    rest.is_empty() || rest[0] == b'/' || prefix.ends_with('/')
}

/// A public-path pattern: an exact path, or everything strictly below a prefix (`/x/*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Exact(String),
    /// Stored with its trailing slash: `/api/v1/public/` covers `/api/v1/public/a`, not
    /// `/api/v1/public` itself nor `/api/v1/publicity`.
    Below(String),
}

/// Why a public-path pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("must start with '/'")]
    NotAbsolute,
    #[error("'*' is only allowed as a final '/*'")]
    StrayWildcard,
    #[error("must not contain '?', '#', '%', '\\\\', ';', '//' or dot segments")]
    NotNormalized,
}

impl PathPattern {
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        if !pattern.starts_with('/') {
            return Err(PatternError::NotAbsolute);
        }
        let (body, below) = match pattern.strip_suffix("/*") {
            Some(body) => (body, true),
            None => (pattern, false),
        };
        if body.contains('*') {
            return Err(PatternError::StrayWildcard);
        }
        if !is_normalized(body) {
            return Err(PatternError::NotNormalized);
        }
        Ok(if below {
            PathPattern::Below(format!("{body}/"))
        } else {
            PathPattern::Exact(body.to_owned())
        })
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(exact) => bytes_eq(path.as_bytes(), exact.as_bytes()),
            PathPattern::Below(prefix) => path.len() > prefix.len() && starts_with(path, prefix),
        }
    }
}

/// Why a service's path prefix was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("must start with '/'")]
    NotAbsolute,
    #[error("must not end with '/'")]
    TrailingSlash,
    #[error("must be a plain normalized path (no '*', '?', '#', '%', '\\', ';', '//', dot segments)")]
    NotNormalized,
}

/// A path prefix the gateway routes on (a service's, an upstream rewrite's, a route
/// timeout's): absolute, no trailing slash, normalized, no wildcard.
pub fn check_prefix(prefix: &str) -> Result<(), PrefixError> {
    if !prefix.starts_with('/') {
        return Err(PrefixError::NotAbsolute);
    }
    if prefix.len() > 1 && prefix.ends_with('/') {
        return Err(PrefixError::TrailingSlash);
    }
    if !is_normalized(prefix) || prefix.contains('*') {
        return Err(PrefixError::NotNormalized);
    }
    Ok(())
}

/// A config path is in the form Envoy's normalization produces, so a pattern can only ever
/// match what Envoy hands the filter.
pub fn is_normalized(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains(['?', '#', '%', '\\', ';'])
        && !path.contains("//")
        && !path.split('/').any(|segment| segment == "." || segment == "..")
        && path.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests;
