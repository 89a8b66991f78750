//! One function per request: given the compiled policy, what the request looks like, the
//! time and the filter's state (token cache, revocation list), say what to do.

use std::rc::Rc;

use crate::cache::TokenCache;
use crate::clock::Clock;
use crate::fast_bytes::bytes_eq;
use crate::header_map::NOT_UTF8;
use crate::authorize;
use crate::headers::{HeaderPolicy, Verdict};
use crate::identity::{Identity, IdentityHeaderSet};
use crate::path::{strip_query, PathReadings};
use crate::policy::Policy;
use crate::rbac::is_method_token;
use crate::shadow::ShadowDifference;
use crate::reply::Denial;
use crate::revocation::RevocationList;
use crate::token::{bearer_candidate, check_token_chars, TokenError};

/// What the filter read from the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub method: &'a str,
    /// `:path` as Envoy hands it over (after its normalization), query included.
    pub path: &'a str,
    /// Every header, in order, names lower-cased, duplicates kept; a name or value that is
    /// not UTF-8 reads as [`crate::header_map::NOT_UTF8`].
    pub headers: &'a [(&'a str, &'a str)],
}

/// What the filter must do with a request. Borrows from the request and the cache, so the
/// hot path copies no header value it does not have to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'r> {
    /// Remove `remove` (every copy), then set the identity's headers and the signed
    /// statement (each replaces every copy). No identity: a public or unrouted path.
    ///
    /// `sent` names the identity headers the client sent: those must be replaced, the
    /// others can simply be added (cheaper for the host: no search for copies).
    ///
    /// `webhook` is the index of a webhook in the policy whose signature must be checked
    /// against the body before the request goes on (see [`crate::webhook`]).
    Forward {
        remove: Vec<&'r str>,
        identity: Option<Rc<Identity>>,
        statement: Option<Rc<str>>,
        sent: IdentityHeaderSet,
        webhook: Option<usize>,
    },
    Deny(Denial),
}

/// An `x-request-id` safe to put in JSON and logs as it is.
pub fn is_plain_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The plain characters of a request id (never empty).
pub fn plain_request_id(id: &str) -> String {
    let plain: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        .take(128)
        .collect();
    if plain.is_empty() { String::from("invalid") } else { plain }
}

impl Decision<'_> {
    /// The headers a forwarded request gets, in the order they are set.
    pub fn headers_to_set(&self) -> Vec<(&'static str, String)> {
        let Decision::Forward { identity, statement, .. } = self else { return Vec::new() };
        let mut set: Vec<(&'static str, String)> = identity
            .iter()
            .flat_map(|id| id.header_values().map(|(n, v)| (n, v.to_owned())).collect::<Vec<_>>())
            .collect();
        if let Some(statement) = statement {
            set.push((STATEMENT_HEADER, statement.to_string()));
        }
        set
    }
}

/// The signed statement's header.
pub const STATEMENT_HEADER: &str = "x-stagedoor-identity";

/// What happened, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub authenticated: bool,
    pub token_error: Option<TokenError>,
    pub cache_hit: Option<bool>,
    pub rbac_denied: bool,
    /// Where the shadow policy decided otherwise than the enforced one.
    pub shadow: Option<ShadowDifference>,
}

pub struct Outcome<'r> {
    pub decision: Decision<'r>,
    pub observed: Observed,
    /// The request id for replies, bodies and the upstream, whatever the decision.
    pub request_id: RequestId<'r>,
}

/// The request's `x-request-id`, or a plain replacement for one that is not a plain token:
/// Envoy's JSON error templates insert the header as it is, so a quote in it would break
/// them. A replacement must also replace the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestId<'r> {
    Kept(&'r str),
    Replaced(String),
}

impl RequestId<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            RequestId::Kept(id) => id,
            RequestId::Replaced(id) => id,
        }
    }
}

/// Per-VM state the decision reads and updates.
pub struct FilterState {
    pub cache: TokenCache,
    pub revocations: RevocationList,
    /// Unknown kids of JWKS issuers, sent to the control plane by the root context.
    pub key_reports: crate::key_reports::KeyReports,
}

/// [`decide_at`] with the exact time `now` (unix seconds).
pub fn decide<'r>(policy: &Policy, request: &RequestView<'r>, now: i64, state: &mut FilterState) -> Outcome<'r> {
    let mut exact = || now;
    decide_at(policy, request, &mut Clock::new(now, 0, &mut exact), state)
}

/// The decision for one request, at the time `clock` gives.
#[inline(never)] // one call a request; inlined, it made the request-headers callback a 28 KB function (policy.rs `OUT_OF_LINE`)
pub fn decide_at<'r>(policy: &Policy, request: &RequestView<'r>, clock: &mut Clock, state: &mut FilterState) -> Outcome<'r> {
    let mut observed = Observed::default();
    let mut request_id = RequestId::Kept("");
    let decision = decide_inner(policy, request, clock, state, &mut observed, &mut request_id);
    Outcome { decision, observed, request_id }
}

fn decide_inner<'r>(
    policy: &Policy,
    request: &RequestView<'r>,
    clock: &mut Clock,
    state: &mut FilterState,
    observed: &mut Observed,
    request_id: &mut RequestId<'r>,
) -> Decision<'r> {
    let path = strip_query(request.path);
    let service = policy.service_for(path);
    let header_policy = service.map(|s| &s.headers).unwrap_or(&policy.unrouted_headers);
    let mut scan = ScannedHeaders::scan(request, header_policy);
    if let Some(id) = scan.request_id.take() {
        *request_id = id;
    }
    if scan.unreadable {
        return Decision::Deny(Denial {
            status: 400,
            code: "MALFORMED_HEADER",
            message: String::from("A request header name, the method or the path is not valid UTF-8"),
        });
    }
    if !is_method_token(request.method) {
        return Decision::Deny(Denial {
            status: 400,
            code: "INVALID_METHOD",
            message: String::from("The request method must be an upper-case token"),
        });
    }
    let ScannedHeaders { mut remove, authorization, venue_headers, sent, .. } = scan;

    let Some(service) = service else {
        // No service: Envoy answers 404, and no identity is asserted, so every client copy
        // of an identity header goes.
        remove.extend(sent.without(IdentityHeaderSet::default()));
        return Decision::Forward { remove, identity: None, statement: None, sent, webhook: None };
    };
    let readings = match PathReadings::read(path) {
        Ok(readings) => readings,
        Err(refusal) => return Decision::Deny(Denial { status: 400, code: "INVALID_PATH", message: refusal.to_string() }),
    };
    let webhook = policy.webhook_for(&readings);
    if service.is_public(&readings) {
        remove.extend(sent.without(IdentityHeaderSet::default()));
        return Decision::Forward { remove, identity: None, statement: None, sent, webhook };
    }

    let identity = match authenticate(policy, authorization.values(), clock, state, observed) {
        Ok(identity) => identity,
        Err(e) => {
            observed.token_error = Some(e);
            return Decision::Deny(Denial { status: 401, code: e.code(), message: e.message() });
        }
    };
    observed.authenticated = true;
    let place = authorize::Request { method: request.method, readings: &readings, venue_headers: &venue_headers };
    if let Err(denial) = authorize::authorize(service, &identity, &place, &mut observed.shadow) {
        observed.rbac_denied = true;
        return Decision::Deny(denial);
    }

    // The statement's time may be the coarse one: it says when the gateway vouched, to
    // within the clock's slack, and is reused for seconds anyway.
    let statement = policy.identity_key.as_ref().map(|key| identity.signed_statement(key, clock.known()));
    // A header we set replaces every copy (removing it first would be a wasted host call);
    // one the client sent that we do not set goes.
    if !sent.is_empty() {
        let mut set = identity.header_names();
        if statement.is_some() {
            set.insert(STATEMENT_HEADER);
        }
        remove.extend(sent.without(set));
    }
    Decision::Forward { remove, identity: Some(identity), statement, sent, webhook }
}

/// What one pass over the request's headers found.
#[derive(Default)]
struct ScannedHeaders<'r> {
    /// Headers the policy removes, each name once.
    remove: Vec<&'r str>,
    authorization: Authorization<'r>,
    venue_headers: Vec<&'r str>,
    /// Identity headers the client sent.
    sent: IdentityHeaderSet,
    request_id: Option<RequestId<'r>>,
    /// A name, `:method` or `:path` the policy cannot read: it cannot strip or route what
    /// it cannot read (Envoy's codecs let none through; this is the last line).
    unreadable: bool,
}

impl<'r> ScannedHeaders<'r> {
    /// Nothing here allocates unless the request needs it: no Vec grows for a request
    /// with one Authorization, no x-venue-id and nothing to strip.
    fn scan(request: &RequestView<'r>, header_policy: &HeaderPolicy) -> Self {
        let mut scan = Self { unreadable: request.method == NOT_UTF8 || request.path == NOT_UTF8, ..Self::default() };
        for &(name, value) in request.headers {
            match read_header(name) {
                Some(ReadHeader::Authorization) => scan.authorization.add(value),
                Some(ReadHeader::VenueId) => scan.venue_headers.push(value),
                Some(ReadHeader::RequestId) if is_plain_request_id(value) => scan.request_id = Some(RequestId::Kept(value)),
                Some(ReadHeader::RequestId) => scan.request_id = Some(RequestId::Replaced(plain_request_id(value))),
                Some(ReadHeader::Unreadable) => scan.unreadable = true,
                None => {}
            }
            match header_policy.request_header(name) {
                Verdict::Keep => {}
                Verdict::Remove if !scan.remove.contains(&name) => scan.remove.push(name),
                Verdict::Remove => {}
                // Replaced or removed once it is known whether an identity is asserted.
                Verdict::Identity(header) => scan.sent.add(header),
            }
        }
        scan
    }
}

/// The headers the decision reads as well as filters.
enum ReadHeader {
    Authorization,
    VenueId,
    RequestId,
    /// A name that is not UTF-8 ([`NOT_UTF8`]).
    Unreadable,
}

/// Which header `name` is to the decision, told by length first: every header of every
/// request comes here, and a string `match` compares same-length names a byte at a time
/// in wasm.
fn read_header(name: &str) -> Option<ReadHeader> {
    let (header, wanted) = match name.len() {
        13 => (ReadHeader::Authorization, "authorization"),
        10 => (ReadHeader::VenueId, "x-venue-id"),
        12 => (ReadHeader::RequestId, "x-request-id"),
        3 => (ReadHeader::Unreadable, NOT_UTF8),
        _ => return None,
    };
    bytes_eq(name.as_bytes(), wanted.as_bytes()).then_some(header)
}

/// The request's Authorization values, kept without a list (nearly every request has
/// exactly one): the first two, which is all [`bearer_candidate`] needs to refuse a repeat.
#[derive(Default)]
struct Authorization<'r> {
    values: [&'r str; 2],
    count: usize,
}

impl<'r> Authorization<'r> {
    fn add(&mut self, value: &'r str) {
        if let Some(slot) = self.values.get_mut(self.count) {
            *slot = value;
        }
        self.count += 1;
    }

    fn values(&self) -> &[&'r str] {
        &self.values[..self.count.min(2)]
    }
}

fn authenticate(
    policy: &Policy,
    authorization: &[&str],
    clock: &mut Clock,
    state: &mut FilterState,
    observed: &mut Observed,
) -> Result<Rc<Identity>, TokenError> {
    let token = bearer_candidate(authorization)?;
    let identity = match state.cache.get(token) {
        Some(identity) => {
            observed.cache_hit = Some(true);
            if let Err(e) = clock.settled(|now| identity.token.check_time(now, policy.verifier.leeway_secs)) {
                state.cache.remove(token);
                return Err(e);
            }
            identity
        }
        None => {
            observed.cache_hit = Some(false);
            check_token_chars(token)?;
            let now = clock.exact();
            let verified = policy.verifier.verify(token, now).inspect_err(|e| note_unknown_key(policy, token, *e, state))?;
            let identity = Rc::new(Identity::resolve(verified, &policy.roles)?);
            state.cache.insert(token, identity.clone(), now);
            identity
        }
    };
    if state.revocations.revokes(&identity.token.revocation_key, identity.token.family_revocation_key.as_deref()) {
        return Err(TokenError::Revoked);
    }
    Ok(identity)
}

/// A token whose kid no key has, of an issuer whose keys come from a JWKS: noted for the
/// control plane, which may find the key in a fresh fetch (crate::key_reports).
fn note_unknown_key(policy: &Policy, token: &str, error: TokenError, state: &mut FilterState) {
    if policy.key_report.is_none() || !matches!(error, TokenError::UnknownKey | TokenError::KeysUnavailable) {
        return;
    }
    if let Some((issuer, kid)) = policy.verifier.unknown_key_of(token) {
        state.key_reports.note(issuer, kid);
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
pub(crate) mod tests;

#[cfg(test)]
#[path = "decision_variant_tests.rs"]
mod variant_tests;

#[cfg(test)]
#[path = "key_report_tests.rs"]
mod key_report_tests;
