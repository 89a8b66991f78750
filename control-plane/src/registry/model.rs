//! The registry file's shape. Field names are the file's; every field is documented in the
//! README ("Registry format").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use stagedoor_filter_core::config::{HeaderPolicyConfig, RoleConfig, RuleConfig, Unmatched};
use stagedoor_filter_core::validation::ValidationConfig;

use super::edge::{EdgeTlsSpec, UpstreamTlsSpec};
pub use super::instance::InstanceSpec;
use super::traffic::TrafficSpec;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    pub auth: AuthSpec,
    /// Signs `x-stagedoor-identity` for backends; absent means the header is not sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentitySpec>,
    /// Replaces the default roles (the original gateway's six) when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<BTreeMap<String, RoleConfig>>,
    /// Browser cross-origin policy, answered by Envoy at the edge; absent: no CORS headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsSpec>,
    /// Requests each client address may make per window; absent: no rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
    /// Limits counted in Redis across every Envoy (issue 13); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_rate_limit: Option<stagedoor_ratelimit::config::GlobalRateLimitConfig>,
    /// Webhook endpoints whose Stripe signatures the edge checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookSpec>,
    /// Callers' keys for signed service-to-service requests (issue 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_requests: Option<super::signed::SignedRequestsSpec>,
    /// HTTPS at the edge; absent: plain HTTP only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_tls: Option<EdgeTlsSpec>,
    /// Refresh and logout answered by the gateway (issue 12); absent: the auth service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<super::token_endpoint::TokenEndpointSpec>,
    pub services: Vec<ServiceSpec>,
    /// GET routes the filter answers by calling several services at once (issue 14); the
    /// filter's compiler judges them (README, "Composite routes").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub composites: Vec<stagedoor_filter_core::aggregate::config::CompositeConfig>,
    /// GET/HEAD routes whose 200 answers each Envoy's filter keeps (README, "Response cache").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_cache: Vec<stagedoor_filter_core::response_cache::config::CacheRouteConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Requests per window per client address (the original: 100)...
    pub requests: u32,
    /// ...per this window (the original: 60000).
    pub window_ms: u64,
    /// How many client addresses each Envoy tracks at once (least recently seen dropped).
    #[serde(default = "default_max_clients")]
    pub max_clients: u32,
}

fn default_max_clients() -> u32 {
    10_000
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// The exact path Stripe posts to, e.g. /webhooks/stripe.
    pub path: String,
    /// The endpoint's signing secret (`whsec_...`): literal (development only) or from the
    /// control plane's environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stripe_secret_env: Option<String>,
}

/// The original gateway's CORS middleware, as Envoy's CORS filter does it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSpec {
    /// Exact origins (`https://app.tickettoken.com`). Any other origin gets no CORS headers.
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    #[serde(default = "cors_methods")]
    pub allowed_methods: Vec<String>,
    #[serde(default = "cors_allowed_headers")]
    pub allowed_headers: Vec<String>,
    #[serde(default = "cors_exposed_headers")]
    pub exposed_headers: Vec<String>,
    #[serde(default = "cors_max_age")]
    pub max_age_secs: u64,
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}
fn cors_methods() -> Vec<String> {
    strings(&["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
}
fn cors_allowed_headers() -> Vec<String> {
    strings(&[
        "Content-Type", "Authorization", "X-API-Key", "X-Request-ID", "X-Venue-ID", "X-Venue-Tier", "X-Idempotency-Key",
        "Idempotency-Key",
    ])
}
fn cors_exposed_headers() -> Vec<String> {
    strings(&["X-Request-ID", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After", "Location"])
}
fn cors_max_age() -> u64 {
    86_400
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    pub issuer: String,
    pub audience: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leeway_secs: Option<u64>,
    pub keys: Vec<KeySpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    pub algorithms: Vec<String>,
    /// An HMAC secret written in the file: for development only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The environment variable of the control plane that holds the HMAC secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// A public JWK (RSA or EC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwk: Option<serde_json::Value>,
    /// `stagedoor token` signs development tokens with this key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dev: bool,
    /// An identity provider's key set (`https://` only): the control plane fetches it and
    /// pushes its keys to every Envoy. Goes with `issuer`; no `kid`, `secret` or `jwk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// The `iss` of the tokens the JWKS's keys verify (and of no others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// How often the JWKS is fetched again at the most (a shorter Cache-Control max-age is
    /// honoured down to 30 s); default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_secs: Option<u64>,
    /// PEM CA bundle the JWKS server's certificate must chain to (a private IdP);
    /// absent: the platform's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_env: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Lower-case name, `[a-z][a-z0-9-]*`; the Envoy cluster is `svc_<name>`.
    pub name: String,
    /// The path prefixes the gateway routes to this service.
    pub routes: Vec<RouteSpec>,
    /// Instances known from the file; live instances from Redis are added to these.
    #[serde(default)]
    pub instances: Vec<InstanceSpec>,
    /// Paths that need no token: exact, or a prefix written with a trailing `/*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_paths: Vec<String>,
    /// (method, path pattern) -> required permission; first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleConfig>,
    #[serde(default, skip_serializing_if = "is_default_headers")]
    pub request_headers: HeaderPolicyConfig,
    /// A protected request no rule covers: `authenticated` (any valid token, the default)
    /// or `deny` (403 ROUTE_NOT_ALLOWED).
    #[serde(default, skip_serializing_if = "is_default_unmatched")]
    pub unmatched: Unmatched,
    /// Routes whose body, query or path params are checked against JSON schemas at the
    /// edge (422 with every violation); the filter's compiler judges them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation: Vec<ValidationConfig>,
    /// Every request must be signed by a `signed_requests` key (401 SIGNATURE_* if not).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_signatures: bool,
    /// Routes (method and path, as a rule's) that must be signed, when not all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signed_routes: Vec<stagedoor_filter_core::signature::SignedRouteConfig>,
    /// Every rule of the service decided in shadow only (counted, never refusing).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rbac_shadow: bool,
    /// Timeouts, retries, circuit breaking, load balancing, health checks.
    #[serde(default, skip_serializing_if = "is_default_traffic")]
    pub traffic: TrafficSpec,
    /// TLS from the gateway to this service's instances; absent: plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTlsSpec>,
}

fn is_default_traffic(t: &TrafficSpec) -> bool {
    *t == TrafficSpec::default()
}

fn is_default_unmatched(u: &Unmatched) -> bool {
    *u == Unmatched::default()
}

fn is_default_headers(h: &HeaderPolicyConfig) -> bool {
    *h == HeaderPolicyConfig::default()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Matched on whole segments: `/api/v1/venues` takes `/api/v1/venues` and
    /// `/api/v1/venues/...`, never `/api/v1/venuesX`.
    pub prefix: String,
    /// What the matched prefix becomes on the way to the upstream; absent means the path
    /// goes through unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_prefix: Option<String>,
}

