//! The filter config's `signed_requests` and signed routes, as the control plane writes them
//! and the filter reads them: data only, compiled by [`super::compile`].

use serde::{Deserialize, Serialize};

/// How far `x-timestamp` may be from the gateway's clock, either way, by default.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;
/// The widest tolerance a registry may ask for (the replay store holds each signature for
/// twice this).
pub const MAX_TOLERANCE_SECS: u64 = 3600;
/// How long the filter waits for the replay store by default.
pub const DEFAULT_REPLAY_TIMEOUT_MS: u64 = 250;
/// A signing secret shorter than this is refused (HMAC-SHA256 keys: RFC 2104 asks for at
/// least the hash's output length; 16 bytes is the floor partners are given).
pub const MIN_SECRET_BYTES: usize = 16;

/// The request headers a signed request carries.
pub const KEY_ID_HEADER: &str = "x-signature-key-id";
pub const TIMESTAMP_HEADER: &str = "x-timestamp";
pub const SIGNATURE_HEADER: &str = "x-signature";

/// The filter config's `signed_requests`: the callers' keys and the replay store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRequestsConfig {
    /// How far `x-timestamp` may be from now, in the past or the future.
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
    /// One key per caller, by id.
    pub keys: Vec<SigningKeyConfig>,
    /// Where each verified signature is spent once.
    pub replay: ReplayConfig,
}

fn default_tolerance() -> u64 {
    DEFAULT_TOLERANCE_SECS
}

/// One caller's key, with its secret resolved (the registry's `secret_env` is read by the
/// control plane).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyConfig {
    /// What the caller sends in `x-signature-key-id`: `[A-Za-z0-9._-]`, 1 to 64.
    pub id: String,
    pub secret: String,
    /// The original gateway's form, `timestamp + "." + body`, for callers written against
    /// it; the method and path are then not signed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub legacy_body_only: bool,
}

/// The RateLimitService the filter asks (over the cluster the ratelimit filters use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    pub cluster: String,
    #[serde(default = "default_replay_timeout")]
    pub timeout_ms: u64,
}

fn default_replay_timeout() -> u64 {
    DEFAULT_REPLAY_TIMEOUT_MS
}

/// A route that requires signatures, written as a rule's method and path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRouteConfig {
    /// An HTTP method, or `*` for any (GET covers HEAD, as for rules).
    #[serde(default = "any_method")]
    pub method: String,
    /// As a rule's path: literal segments and `{name}` params.
    pub path: String,
}

fn any_method() -> String {
    String::from("*")
}

