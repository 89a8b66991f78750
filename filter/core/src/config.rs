//! The filter's configuration as it travels from the control plane to Envoy (JSON).
//!
//! These are plain data transfer types: the control plane writes them, the filter reads them,
//! and both turn them into a [`crate::Policy`] with [`crate::Policy::compile`], which is where
//! every rule about what a valid config is lives.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything the filter needs, for every service the gateway routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Hash of this config's content; shown in logs so an operator can tell which config a
    /// filter runs.
    pub config_version: String,
    /// The services, each with the path prefixes that route to it.
    pub services: Vec<ServiceConfig>,
    pub auth: AuthConfig,
    /// Role name -> default permissions and venue scope. A token's `permissions` claim
    /// replaces its role's defaults.
    #[serde(default = "crate::defaults::roles")]
    pub roles: BTreeMap<String, RoleConfig>,
    /// When set, requests carry `x-stagedoor-identity`, an HMAC-SHA256-signed statement of
    /// the identity headers that backends can verify with this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_signing_key: Option<String>,
    /// Where the filter polls the revocation list; absent means no revocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<RevocationConfig>,
    /// How many verified tokens each filter instance remembers.
    #[serde(default = "default_cache_entries")]
    pub token_cache_entries: usize,
    /// Webhook endpoints whose signatures the edge checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookConfig>,
    /// Callers' keys for signed requests and the replay store; needed when any service
    /// requires signatures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_requests: Option<crate::signature::config::SignedRequestsConfig>,
    /// GET routes the filter answers by composing several services' answers (issue 14).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub composites: Vec<crate::aggregate::config::CompositeConfig>,
    /// GET/HEAD routes whose 200 answers each filter VM keeps (issue 14).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_cache: Vec<crate::response_cache::config::CacheRouteConfig>,
}

/// The Envoy cluster (and EDS service name) of a registry service: the control plane names
/// its clusters with this, and composite routes call them by it.
pub fn service_cluster(service: &str) -> String {
    format!("svc_{service}")
}

/// A Stripe webhook endpoint: the exact path it is posted to and its signing secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub path: String,
    pub stripe_secret: String,
}

/// The defaults and bounds of the filter's config, in one place: the control plane fills
/// its configs from these too.
pub const DEFAULT_TOKEN_CACHE_ENTRIES: usize = 4096;
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
pub const MAX_LEEWAY_SECS: i64 = 3600;
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 250;

fn default_cache_entries() -> usize {
    DEFAULT_TOKEN_CACHE_ENTRIES
}

/// One upstream service as the filter sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    /// Path prefixes (matched on whole segments) that Envoy routes to this service.
    pub prefixes: Vec<String>,
    /// Paths that need no token: exact paths, or prefixes written with a trailing `/*`.
    #[serde(default)]
    pub public_paths: Vec<String>,
    /// Route rules: (method, path pattern) -> required permission. First match wins.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub request_headers: HeaderPolicyConfig,
    /// What a protected request that no rule covers gets.
    #[serde(default, skip_serializing_if = "Unmatched::is_default")]
    pub unmatched: Unmatched,
    /// Routes whose body, query or path params are checked against JSON schemas; the
    /// first that covers a request applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation: Vec<crate::validation::config::ValidationConfig>,
    /// Every request of the service must be signed (see [`crate::signature`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_signatures: bool,
    /// Routes that must be signed, when not the whole service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signed_routes: Vec<crate::signature::config::SignedRouteConfig>,
    /// Every rule of the service (and `unmatched: deny`) is decided in shadow only: the
    /// enforced decision lets any valid token through, and differences are counted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rbac_shadow: bool,
}

impl Unmatched {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// The default for a protected request no rule covers (Istio users know the second as
/// deny-by-default: every allowed route is then listed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmatched {
    /// Any valid token will do.
    #[default]
    Authenticated,
    /// 403 `ROUTE_NOT_ALLOWED`.
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// An HTTP method, or `*` for any.
    #[serde(default = "any_method")]
    pub method: String,
    /// Segments are literal or `{name}` (one whole segment, captured as a path param).
    pub path: String,
    pub permission: String,
    /// Names the rule in shadow metrics and logs: `[a-z0-9_-]`, 1 to 40; default
    /// `rules_<index>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Decided in shadow only: the request goes on as if the rule were not there, and is
    /// counted where the rule would have refused it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

impl RuleConfig {
    /// A route (method and path) for matchers that share the rules' (validation, signed
    /// routes): no permission needed, never shadow.
    pub fn route(method: &str, path: &str) -> Self {
        Self { method: method.to_owned(), path: path.to_owned(), permission: String::from("*"), name: None, shadow: false }
    }
}

fn any_method() -> String {
    String::from("*")
}

/// Which client request headers reach the upstream, on top of the block list that always
/// applies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderPolicyConfig {
    /// Extra names allowed besides the defaults; a trailing `*` allows a prefix.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Forward every header not blocked (no allow-list).
    #[serde(default)]
    pub allow_any: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub issuer: String,
    pub audience: String,
    /// Clock skew allowed on exp, nbf and iat.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Live keys; several at once so keys rotate without downtime.
    pub keys: Vec<KeyConfig>,
    /// Issuers whose keys the control plane fetches from their JWKS URL and pushes in
    /// `keys` (each with its `issuer`); absent: every key is the `issuer`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<JwksConfig>,
}

/// The issuers whose keys come from a JWKS, and where the filter reports a kid it does not
/// know so the control plane can look for it at once (see [`crate::key_reports`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    /// A token of one of these issuers with no key pushed yet is refused with
    /// `TOKEN_KEYS_UNAVAILABLE` (fail closed until the first good fetch).
    pub issuers: Vec<String>,
    /// Absent: unknown kids are not reported (the periodic refresh still finds new keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<KeyReportConfig>,
}

/// Where the root context posts the kids tokens named that no key has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyReportConfig {
    /// The Envoy cluster that reaches the control plane's HTTP side.
    pub cluster: String,
    pub authority: String,
    pub path: String,
}

impl AuthConfig {
    /// Whether a filter built without the `asymmetric` feature (`token::crypto_backend`)
    /// serves these keys: shared secrets under HMAC algorithms only, and no JWKS issuer
    /// (whose keys are public keys, fetched later).
    pub fn hmac_only(&self) -> bool {
        self.jwks.is_none()
            && self.keys.iter().all(|key| {
                key.jwk.is_none() && key.algorithms.iter().all(|alg| matches!(alg.as_str(), "HS256" | "HS384" | "HS512"))
            })
    }
}

fn default_leeway() -> u64 {
    DEFAULT_LEEWAY_SECS
}

/// A verification key: exactly one of `secret` (HMAC) or `jwk` (RSA or EC public key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Matched against the token header's `kid`; a key without one serves tokens without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The algorithms this key may verify (HS256, RS256, ES256, ...). Anything else,
    /// `none` in any spelling included, is refused.
    pub algorithms: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwk: Option<serde_json::Value>,
    /// A key from an issuer's JWKS verifies that issuer's tokens only; absent: the key is
    /// `auth.issuer`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    pub permissions: Vec<String>,
    /// A venue-scoped role acts only on the venues in the token's `venues` claim.
    pub venue_scoped: bool,
    /// The permissions the role is about to get, decided in shadow: requests go on by
    /// `permissions`, and those the new set would decide otherwise are counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_permissions: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationConfig {
    /// The Envoy cluster that reaches the control plane's HTTP side.
    pub cluster: String,
    /// The :authority to send.
    pub authority: String,
    /// Path of the revocation feed; the filter appends `?since=<cursor>`.
    pub path: String,
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    /// How long the control plane may hold a poll open when nothing changed, answering at
    /// once when something does (a long poll, see [`crate::feed_poll`]); 0: answered at once,
    /// polled every `poll_interval_ms`.
    #[serde(default)]
    pub wait_ms: u64,
}

fn default_poll_ms() -> u64 {
    DEFAULT_POLL_INTERVAL_MS
}

impl FilterConfig {
    #[inline(never)] // configure-time (policy.rs `OUT_OF_LINE`)
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings cannot fail; fall back to an empty object
        // (which the filter refuses) rather than panic.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(algorithms: &[&str], jwk: bool) -> KeyConfig {
        KeyConfig {
            kid: None,
            algorithms: algorithms.iter().map(|a| (*a).to_owned()).collect(),
            secret: (!jwk).then(|| String::from("s")),
            jwk: jwk.then(|| serde_json::json!({ "kty": "RSA", "n": "AQAB", "e": "AQAB" })),
            issuer: None,
        }
    }

    fn auth(keys: Vec<KeyConfig>, jwks: bool) -> AuthConfig {
        let jwks = jwks.then(|| JwksConfig { issuers: vec![String::from("idp")], report: None });
        AuthConfig { issuer: String::from("i"), audience: String::from("a"), leeway_secs: 0, keys, jwks }
    }

    #[test]
    fn only_hmac_secrets_without_a_jwks_issuer_are_hmac_only() {
        assert!(auth(vec![key(&["HS256"], false), key(&["HS384", "HS512"], false)], false).hmac_only());
        assert!(auth(vec![], false).hmac_only(), "no key: nothing to verify");
        assert!(!auth(vec![key(&["HS256"], false), key(&["RS256"], true)], false).hmac_only());
        assert!(!auth(vec![key(&["HS256", "ES256"], false)], false).hmac_only(), "one algorithm is enough");
        assert!(!auth(vec![key(&["HS256"], true)], false).hmac_only(), "a JWK is a public key");
        assert!(!auth(vec![key(&["HS256"], false)], true).hmac_only(), "a JWKS issuer's keys come later");
    }
}
