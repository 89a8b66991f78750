//! Which client headers reach an upstream, and which upstream headers reach a client.
//! Header names arrive lower-cased (Envoy's codecs lower-case them).

use std::rc::Rc;

use crate::config::HeaderPolicyConfig;
use crate::defaults::{ALLOWED_HEADERS, BLOCKED_HEADERS, ENVOY_MANAGED, IDENTITY_HEADERS, INTERNAL_PREFIX};
use crate::fast_bytes::{starts_with, StrTable};
use crate::identity::IdentityHeaderSet;

/// A compiled name pattern: exact, or a prefix from a trailing `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NamePattern {
    Exact(String),
    Prefix(String),
}

/// Why a header policy was refused; the caller names the service and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderPolicyError {
    #[error("{0:?} is not a header name (letters, digits, '-', optional final '*')")]
    NotAHeaderName(String),
}

impl NamePattern {
    fn parse(pattern: &str) -> Result<Self, HeaderPolicyError> {
        let lower = pattern.to_ascii_lowercase();
        let (body, prefix) = match lower.strip_suffix('*') {
            Some(body) => (body, true),
            None => (lower.as_str(), false),
        };
        if body.is_empty() || !body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(HeaderPolicyError::NotAHeaderName(pattern.to_owned()));
        }
        Ok(if prefix { Self::Prefix(body.to_owned()) } else { Self::Exact(body.to_owned()) })
    }

    /// How a pattern reads on its own (the compiled policy does the same with one table).
    #[cfg(test)]
    fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(exact) => name == exact,
            Self::Prefix(prefix) => name.starts_with(prefix.as_str()),
        }
    }
}

/// What the policy does with one request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Passes to the upstream as the client sent it.
    Keep,
    /// Removed, every copy.
    Remove,
    /// An identity header ([`IDENTITY_HEADERS`]), as a one-name set: the client's copies
    /// never pass; the gateway sets it from the verified token, or removes it when it
    /// asserts nothing.
    Identity(IdentityHeaderSet),
}

/// Per-service request header policy, compiled so that each header costs one table
/// lookup: every name with a fixed fate (Envoy's own, blocked, identity, allowed) is in
/// `names`; only names not listed there look at prefixes.
#[derive(Debug, Clone)]
pub struct HeaderPolicy {
    /// Shared: services with the same header config share one table (`Policy::compile`
    /// builds each distinct one once), so a clone costs a count, not a table.
    names: Rc<StrTable<Verdict>>,
    /// Allowed name prefixes (patterns ending in `*`). None: no allow-list, every header
    /// that is not blocked passes.
    allow_prefixes: Option<Vec<String>>,
}

impl HeaderPolicy {
    pub fn compile(config: &HeaderPolicyConfig) -> Result<Self, HeaderPolicyError> {
        let HeaderPolicyConfig { allow, allow_any } = config;
        if *allow_any {
            return Ok(Self::open());
        }
        let mut allowed = Vec::new();
        let mut allow_prefixes = Vec::new();
        for pattern in ALLOWED_HEADERS.iter().copied().chain(allow.iter().map(String::as_str)) {
            match NamePattern::parse(pattern)? {
                NamePattern::Exact(name) => allowed.push(name),
                NamePattern::Prefix(prefix) => allow_prefixes.push(prefix),
            }
        }
        Ok(Self { names: Rc::new(fixed_names(&allowed)), allow_prefixes: Some(allow_prefixes) })
    }

    /// Block list only, for requests to paths no service owns (Envoy answers 404 itself).
    pub fn open() -> Self {
        Self { names: Rc::new(fixed_names(&[])), allow_prefixes: None }
    }

    /// What happens to this client header. Precedence: Envoy's own headers and
    /// pseudo-headers pass, then the block list and identity headers go, then the
    /// allow-list decides.
    pub fn request_header(&self, name: &str) -> Verdict {
        if name.as_bytes().first() == Some(&b':') {
            return Verdict::Keep;
        }
        if let Some(verdict) = self.names.get(name) {
            return verdict;
        }
        if starts_with(name, INTERNAL_PREFIX) {
            return Verdict::Remove;
        }
        match &self.allow_prefixes {
            Some(prefixes) if !prefixes.iter().any(|p| starts_with(name, p)) => Verdict::Remove,
            _ => Verdict::Keep,
        }
    }

    /// Must this client header be removed before the request goes upstream? Identity
    /// headers count as removed here (the caller re-adds the verified values). The yes/no
    /// view the tests read; the decision uses [`HeaderPolicy::request_header`].
    #[cfg(test)]
    pub fn removes_request_header(&self, name: &str) -> bool {
        self.request_header(name) != Verdict::Keep
    }
}

/// A request trailer that must not reach an upstream: every identity header (the
/// statement included), every blocked or internal header, and the headers the decision
/// reads (Authorization, x-venue-id, x-request-id). An upstream that merges trailers into
/// headers must not find a client's copy of any of them there.
pub fn is_forbidden_trailer(name: &str) -> bool {
    matches!(name, "authorization" | "x-venue-id" | "x-request-id")
        || name.starts_with(':')
        || OPEN_POLICY.with(|policy| policy.request_header(name) != Verdict::Keep)
}

thread_local! {
    // The block list and identity headers only (no allow-list), built once per thread.
    static OPEN_POLICY: HeaderPolicy = HeaderPolicy::open();
}

/// The names whose fate does not depend on prefixes, in order of precedence (a later
/// insert wins): the allow-list's exact names, then the block list, then identity
/// headers, then the headers Envoy manages.
fn fixed_names(allowed: &[String]) -> StrTable<Verdict> {
    let allowed = allowed.iter().map(|name| (name.as_str(), Verdict::Keep));
    let blocked = BLOCKED_HEADERS.iter().map(|name| (*name, Verdict::Remove));
    let identity = IDENTITY_HEADERS.iter().map(|name| (*name, Verdict::Identity(IdentityHeaderSet::of(name))));
    let managed = ENVOY_MANAGED.iter().map(|name| (*name, Verdict::Keep));
    StrTable::new(allowed.chain(blocked).chain(identity).chain(managed))
}

/// Blocked in every request, whatever the allow-list says.
///
/// Every header of every request passes through here, so the common case (a header that
/// is not an `x-` header at all) is settled by its first two bytes, before any list scan.
pub fn is_blocked(name: &str) -> bool {
    if !name.starts_with("x-") {
        return matches!(name, "proxy-authenticate" | "proxy-authorization" | "www-authenticate");
    }
    name.starts_with(INTERNAL_PREFIX) || IDENTITY_HEADERS.contains(&name) || BLOCKED_HEADERS.contains(&name)
}

/// Removed from upstream responses: internal headers and the block list. Envoy does this
/// natively (the control plane turns [`RESPONSE_REMOVED_PREFIX`] and
/// [`response_removed_headers`] into a header_mutation filter), so the wasm filter never
/// reads response headers.
pub fn removes_response_header(name: &str) -> bool {
    name.starts_with(RESPONSE_REMOVED_PREFIX) || response_removed_headers().any(|h| h == name)
}

/// Response headers removed by prefix.
pub const RESPONSE_REMOVED_PREFIX: &str = INTERNAL_PREFIX;

/// Response headers removed by name: the block list, except `www-authenticate`, which the
/// gateway's own 401s carry (Envoy's native removal cannot tell those from an upstream's).
pub fn response_removed_headers() -> impl Iterator<Item = &'static str> {
    BLOCKED_HEADERS.iter().copied().filter(|h| *h != "www-authenticate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_never_carry_what_the_gateway_decides_on_or_asserts() {
        for name in ["x-tenant-id", "x-user-id", "x-stagedoor-identity", "x-venue-ids", "authorization", "x-venue-id",
            "x-request-id", "x-internal-anything", "x-admin-token", "x-http-method-override"]
        {
            assert!(is_forbidden_trailer(name), "{name}");
        }
        for name in ["grpc-status", "x-checksum", "content-md5", "x-custom-trace"] {
            assert!(!is_forbidden_trailer(name), "{name}");
        }
    }

    #[test]
    fn identity_override_and_internal_headers_are_always_removed() {
        let open = HeaderPolicy::compile(&HeaderPolicyConfig { allow: vec![], allow_any: true }).unwrap();
        for name in [
            "x-tenant-id", "x-tenant-source", "x-user-id", "x-user-role", "x-user-permissions", "x-venue-ids",
            "x-internal-anything", "x-internal-service", "x-admin-token", "x-privileged", "x-http-method-override",
            "x-http-method", "x-method-override", "x-original-url", "x-rewrite-url", "x-real-ip", "x-forwarded-host",
            "proxy-authorization", "x-stagedoor-identity",
        ] {
            assert!(open.removes_request_header(name), "{name}");
        }
        assert!(!open.removes_request_header("x-something-else"));
    }

    #[test]
    fn every_listed_header_is_blocked_whatever_the_fast_path() {
        for name in IDENTITY_HEADERS.iter().chain(BLOCKED_HEADERS) {
            assert!(is_blocked(name), "{name}");
        }
    }

    #[test]
    fn the_default_allow_list_is_the_originals() {
        let policy = HeaderPolicy::compile(&HeaderPolicyConfig::default()).unwrap();
        for name in ["accept", "authorization", "content-type", "idempotency-key", "x-custom-foo", "x-request-id"] {
            assert!(!policy.removes_request_header(name), "{name}");
        }
        for name in ["cookie", "x-echo-status", "x-customer", "x-tenant-id"] {
            assert!(policy.removes_request_header(name), "{name}");
        }
        for name in [":path", ":authority", "host", "content-length", "transfer-encoding", "x-forwarded-for"] {
            assert!(!policy.removes_request_header(name), "Envoy owns {name}");
        }
    }

    #[test]
    fn a_service_can_allow_more_but_never_a_blocked_header() {
        let policy = HeaderPolicy::compile(&HeaderPolicyConfig {
            allow: vec!["stripe-signature".into(), "x-echo-*".into(), "x-tenant-id".into(), "x-internal-*".into()],
            allow_any: false,
        })
        .unwrap();
        assert!(!policy.removes_request_header("stripe-signature"));
        assert!(!policy.removes_request_header("x-echo-status"));
        assert!(policy.removes_request_header("x-tenant-id"));
        assert!(policy.removes_request_header("x-internal-key"));
    }

    /// The policy as written in the issue, one list at a time: what the compiled table
    /// must agree with.
    fn reference_removes(allow: Option<&[NamePattern]>, name: &str) -> bool {
        if name.starts_with(':') || ENVOY_MANAGED.contains(&name) {
            return false;
        }
        if is_blocked(name) {
            return true;
        }
        allow.is_some_and(|allow| !allow.iter().any(|p| p.matches(name)))
    }

    proptest::proptest! {
        #[test]
        fn the_compiled_table_agrees_with_the_lists(
            extra in proptest::collection::vec("[a-z]{1,3}(-[a-z]{1,3})?\\*?", 0..4),
            allow_any in proptest::bool::ANY,
            names in proptest::collection::vec(proptest::prop_oneof![
                proptest::sample::select(
                    ALLOWED_HEADERS.iter().chain(BLOCKED_HEADERS).chain(IDENTITY_HEADERS).chain(ENVOY_MANAGED)
                        .map(|n| n.trim_end_matches('*').to_owned()).collect::<Vec<_>>()),
                "(x-|x-internal-|x-custom-|:|)[a-z-]{0,8}",
            ], 1..16),
        ) {
            let config = HeaderPolicyConfig { allow: extra.clone(), allow_any };
            let policy = HeaderPolicy::compile(&config).unwrap();
            let patterns: Vec<NamePattern> =
                ALLOWED_HEADERS.iter().copied().chain(extra.iter().map(String::as_str)).map(|p| NamePattern::parse(p).unwrap()).collect();
            let allow = (!allow_any).then_some(patterns.as_slice());
            for name in &names {
                proptest::prop_assert_eq!(policy.removes_request_header(name), reference_removes(allow, name), "{}", name);
                let identity = match policy.request_header(name) {
                    Verdict::Identity(set) => set.contains(name),
                    _ => false,
                };
                proptest::prop_assert_eq!(identity, IDENTITY_HEADERS.contains(&name.as_str()));
            }
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "*", "x y", "x_y", "a*b"] {
            assert!(HeaderPolicy::compile(&HeaderPolicyConfig { allow: vec![bad.into()], allow_any: false }).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_lose_internal_headers() {
        assert!(removes_response_header("x-internal-secret"));
        assert!(removes_response_header("x-internal-debug"));
        assert!(removes_response_header("x-admin-token"));
        assert!(!removes_response_header("www-authenticate"), "the gateway's 401s carry it");
        assert!(!removes_response_header("x-echo-marker"));
        assert!(!removes_response_header("content-length"));
    }
}
