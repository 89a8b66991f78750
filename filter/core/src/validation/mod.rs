//! Request validation per route: the body, the query and the path params checked against
//! the route's JSON schemas ([`crate::schema`]) before the request goes on.
//!
//! Only a route with a body schema makes the filter wait for the body; the bytes forwarded
//! are the bytes received (the body is parsed to be checked, never re-serialized).

pub mod config;
mod reply;
#[cfg(test)]
mod tests;

use std::rc::Rc;


use crate::config::RuleConfig;
use crate::path::{strip_query, PathReadings};
use crate::rbac::{Params, Rule};
use crate::schema::params::{parse_query, QueryError};
use crate::schema::{Schema, SchemaError, Violation};

pub use config::ValidationConfig;
pub use reply::validation_reply;

/// A body larger than this gets a 413 unless the route sets its own limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// No route may ask for more: Envoy refuses a body it buffers beyond the connection's
/// buffer limit (1 MiB by default, not raised by the translator) with its own 413 before
/// the filter sees it, so a larger limit would be a promise the gateway cannot keep.
pub const MAX_BODY_BYTES_LIMIT: usize = 1024 * 1024;

/// A compiled validated route.
#[derive(Debug, Clone)]
pub struct RouteValidation {
    route: Rule,
    body: Option<Schema>,
    query: Option<Schema>,
    params: Option<Schema>,
    pub max_body_bytes: usize,
}

/// Why a validated route's config was refused: the field (with the schema path inside it
/// for a schema) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationConfigError {
    pub field: String,
    pub reason: String,
}

/// Why a request fails its route's validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidationFailure {
    /// 413: the body is over the route's limit.
    TooLarge { limit: usize },
    /// 400: the body is not JSON (the parser's reason, which names the line and column).
    NotJson(String),
    /// 400: the query string cannot be read as text.
    BadQuery(QueryError),
    /// 422: every violation, each at `/body/...`, `/query/...` or `/params/...`.
    Invalid(Vec<Violation>),
}

impl RouteValidation {
    pub fn compile(config: &ValidationConfig) -> Result<Self, ValidationConfigError> {
        let ValidationConfig { method, path, body, query, params, max_body_bytes } = config;
        // The rule matcher's own method and path rules, so a validated route covers exactly
        // the requests a rule with the same method and path covers.
        let rule = RuleConfig::route(method, path);
        let route = Rule::compile(&rule).map_err(|e| ValidationConfigError { field: String::from("path"), reason: e.to_string() })?;
        let schema = |field: &str, value: &Option<serde_json::Value>| {
            value
                .as_ref()
                .map(Schema::compile)
                .transpose()
                .map_err(|SchemaError { at, reason }| ValidationConfigError { field: format!("{field}{at}"), reason })
        };
        let max_body_bytes = max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 || max_body_bytes > MAX_BODY_BYTES_LIMIT {
            return Err(ValidationConfigError {
                field: String::from("max_body_bytes"),
                reason: format!("must be between 1 and {MAX_BODY_BYTES_LIMIT}"),
            });
        }
        Ok(Self {
            route,
            body: schema("body", body)?,
            query: schema("query", query)?,
            params: schema("params", params)?,
            max_body_bytes,
        })
    }

    /// The path params if this route covers the request (on any reading of its path: a
    /// variant that reaches the same handler is validated too).
    pub fn matches<'p>(&'p self, method: &str, readings: &'p PathReadings<'_>) -> Option<Params<'p>> {
        readings.each().find_map(|path| self.route.matches(method, path))
    }

    /// Does the request's body have to be waited for?
    pub fn checks_body(&self) -> bool {
        self.body.is_some()
    }

    /// The violations of what the headers carry: the query string of `target` (`:path`)
    /// and `params`.
    pub fn check_head(&self, target: &str, params: &Params<'_>) -> Result<Vec<Violation>, ValidationFailure> {
        let mut violations = Vec::new();
        if let Some(schema) = &self.query {
            let query = target.get(strip_query(target).len() + 1..).unwrap_or("");
            let pairs = parse_query(query).map_err(ValidationFailure::BadQuery)?;
            let object = schema.params_object(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            violations.extend(prefixed("/query", schema.validate(&object)));
        }
        if let Some(schema) = &self.params {
            let object = schema.params_object(params.iter().copied());
            violations.extend(prefixed("/params", schema.validate(&object)));
        }
        Ok(violations)
    }

    /// The violations of the whole body (what Envoy buffered once the stream ended).
    pub fn check_body(&self, body: &[u8]) -> Result<Vec<Violation>, ValidationFailure> {
        if body.len() > self.max_body_bytes {
            return Err(ValidationFailure::TooLarge { limit: self.max_body_bytes });
        }
        let Some(schema) = &self.body else { return Ok(Vec::new()) };
        let document: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| ValidationFailure::NotJson(e.to_string()))?;
        Ok(prefixed("/body", schema.validate(&document)).collect())
    }

    /// Whether a body of `size` bytes so far is already over the limit (checked as the
    /// body arrives, so an oversized one is refused before all of it is buffered).
    pub fn too_large(&self, size: usize) -> Option<ValidationFailure> {
        (size > self.max_body_bytes).then_some(ValidationFailure::TooLarge { limit: self.max_body_bytes })
    }
}

fn prefixed(part: &str, violations: Vec<Violation>) -> impl Iterator<Item = Violation> + '_ {
    violations.into_iter().map(move |v| Violation { field: format!("{part}{}", v.field), ..v })
}

/// A request whose body is still to be checked: its route, and what its head already
/// broke (reported with the body's violations, so one reply names them all).
#[derive(Debug, Clone)]
pub struct PendingBody {
    pub route: Rc<RouteValidation>,
    head_violations: Vec<Violation>,
}

impl PendingBody {
    /// The body's check, with the head's violations first.
    pub fn check(self, body: &[u8]) -> Result<(), ValidationFailure> {
        let mut violations = self.head_violations;
        violations.extend(self.route.check_body(body)?);
        if violations.is_empty() { Ok(()) } else { Err(ValidationFailure::Invalid(violations)) }
    }
}

/// The validation a request's route asks for, checked as far as its head allows:
/// `Ok(Some(pending))` when the body must still be checked, `Ok(None)` when the request may
/// go on (no validated route covers it, or its route has no body schema and its head
/// passed).
#[inline(never)] // kept out of the request-headers callback (policy.rs `OUT_OF_LINE`)
pub fn check_request_head(policy: &crate::Policy, method: &str, target: &str) -> Result<Option<PendingBody>, ValidationFailure> {
    // Every forwarded request comes here: without a validated route anywhere it costs one
    // branch, not a second service lookup.
    if !policy.validates {
        return Ok(None);
    }
    let path = strip_query(target);
    let Some(service) = policy.service_for(path).filter(|s| !s.validations.is_empty()) else { return Ok(None) };
    // A path without readings was refused by the decision already.
    let Ok(readings) = PathReadings::read(path) else { return Ok(None) };
    for route in &service.validations {
        if let Some(params) = route.matches(method, &readings) {
            let head_violations = route.check_head(target, &params)?;
            if route.checks_body() {
                return Ok(Some(PendingBody { route: Rc::clone(route), head_violations }));
            }
            return if head_violations.is_empty() { Ok(None) } else { Err(ValidationFailure::Invalid(head_violations)) };
        }
    }
    Ok(None)
}
