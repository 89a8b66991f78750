//! One function per request: given the compiled policy, what the request looks like, the
//! time and the filter's state (token cache, revocation list), say what to do.

use std::rc::Rc;

use crate::cache::TokenCache;
use crate::identity::Identity;
use crate::path::strip_query;
use crate::policy::Policy;
use crate::rbac::{has_permission, Params};
use crate::reply::Denial;
use crate::revocation::RevocationList;
use crate::token::{bearer_token, TokenError};

/// What the filter read from the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a str,
    /// `:path` as Envoy hands it over (after its normalization), query included.
    pub path: &'a str,
    /// Every header, in order, names lower-cased, duplicates kept.
    pub headers: &'a [(String, String)],
}

/// What the filter must do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Remove these headers (every copy), then set these (each replaces every copy).
    Forward { remove: Vec<String>, set: Vec<(&'static str, String)> },
    Deny(Denial),
}

/// What happened, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    pub authenticated: bool,
    pub token_error: Option<TokenError>,
    pub cache_hit: Option<bool>,
    pub rbac_denied: bool,
}

pub struct Outcome {
    pub decision: Decision,
    pub observed: Observed,
}

/// Per-VM state the decision reads and updates.
pub struct FilterState {
    pub cache: TokenCache,
    pub revocations: RevocationList,
}

pub fn decide(policy: &Policy, request: &RequestView<'_>, now: i64, state: &mut FilterState) -> Outcome {
    let mut observed = Observed::default();
    let decision = decide_inner(policy, request, now, state, &mut observed);
    Outcome { decision, observed }
}

fn decide_inner(
    policy: &Policy,
    request: &RequestView<'_>,
    now: i64,
    state: &mut FilterState,
    observed: &mut Observed,
) -> Decision {
    let path = strip_query(request.path);
    let service = policy.service_for(path);
    let header_policy = service.map(|s| &s.headers).unwrap_or(&policy.unrouted_headers);

    let mut remove: Vec<String> = Vec::new();
    let mut authorization: Vec<&str> = Vec::new();
    let mut venue_headers: Vec<&str> = Vec::new();
    for (name, value) in request.headers {
        match name.as_str() {
            "authorization" => authorization.push(value),
            "x-venue-id" => venue_headers.push(value),
            _ => {}
        }
        if header_policy.removes_request_header(name) && !remove.contains(name) {
            remove.push(name.clone());
        }
    }

    let Some(service) = service.filter(|s| !s.is_public(path)) else {
        // No service (Envoy will 404) or a public path: no identity is asserted, and
        // every client copy of an identity header is already in `remove`.
        return Decision::Forward { remove, set: Vec::new() };
    };

    let identity = match authenticate(policy, &authorization, now, state, observed) {
        Ok(identity) => identity,
        Err(e) => {
            observed.token_error = Some(e);
            return Decision::Deny(Denial { status: 401, code: e.code(), message: e.message() });
        }
    };
    observed.authenticated = true;

    let (params, required) = match service.rules.iter().find_map(|r| r.matches(request.method, path).map(|p| (p, r))) {
        Some((params, rule)) => (params, Some(rule.permission.as_str())),
        None => (Params::new(), None),
    };
    if let Some(required) = required {
        if !has_permission(&identity.permissions, required, &params, &identity.token.subject) {
            observed.rbac_denied = true;
            return Decision::Deny(Denial {
                status: 403,
                code: "INSUFFICIENT_PERMISSIONS",
                message: format!("Insufficient permissions: {required} required"),
            });
        }
    }
    if identity.venue_scoped {
        let venues = params.iter().filter(|(name, _)| *name == "venueId").map(|(_, v)| *v).chain(venue_headers);
        let allowed = identity.token.venues.as_deref().unwrap_or(&[]);
        for venue in venues {
            if !allowed.iter().any(|v| v == venue) {
                observed.rbac_denied = true;
                return Decision::Deny(Denial {
                    status: 403,
                    code: "VENUE_ACCESS_DENIED",
                    message: String::from("Access denied to this venue"),
                });
            }
        }
    }

    let mut set = identity.headers();
    if let Some(key) = &policy.identity_key {
        set.push(("x-stagedoor-identity", identity.signed_statement(key, now)));
    }
    // A header we set replaces every copy; removing it first would be a wasted host call.
    remove.retain(|name| !set.iter().any(|(s, _)| s == name));
    Decision::Forward { remove, set }
}

fn authenticate(
    policy: &Policy,
    authorization: &[&str],
    now: i64,
    state: &mut FilterState,
    observed: &mut Observed,
) -> Result<Rc<Identity>, TokenError> {
    let token = bearer_token(authorization)?;
    let identity = match state.cache.get(token) {
        Some(identity) => {
            observed.cache_hit = Some(true);
            if let Err(e) = identity.token.check_time(now, policy.verifier.leeway_secs) {
                state.cache.remove(token);
                return Err(e);
            }
            identity
        }
        None => {
            observed.cache_hit = Some(false);
            let verified = policy.verifier.verify(token, now)?;
            let identity = Rc::new(Identity::resolve(verified, &policy.roles)?);
            state.cache.insert(token, identity.clone(), now);
            identity
        }
    };
    if state.revocations.is_revoked(&identity.token.revocation_key) {
        return Err(TokenError::Revoked);
    }
    Ok(identity)
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
