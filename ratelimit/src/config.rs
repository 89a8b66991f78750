//! The registry's `global_rate_limit` section as written (DTOs); `compile.rs` checks it.
//! Every field is documented in the README ("Global rate limiting").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::fail_mode::FailMode;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalRateLimitConfig {
    /// Salt for hashing anonymous callers' addresses: literal (development only)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// ...or the name of an environment variable of the control plane holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt_env: Option<String>,
    /// How long Envoy waits for the limiter before its failure mode applies.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Roles no limit applies to (a verified x-user-role).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unlimited_roles: Vec<String>,
    /// How many subjects the local fallback tracks per control-plane replica.
    #[serde(default = "default_local_fallback_keys")]
    pub local_fallback_keys: usize,
    pub limits: Vec<LimitConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// Names the limit in keys, metrics and errors: [a-z0-9_-], unique.
    pub name: String,
    /// Requests per period (the original: 100 per 60000 ms)...
    pub requests: u32,
    pub period_ms: u64,
    /// ...admitted at once from rest; default `requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Path prefixes (segment-wise) the limit applies to; empty: every route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    #[serde(default)]
    pub per: Per,
    /// Count and report, never refuse: for rolling a limit out.
    #[serde(default)]
    pub shadow: bool,
    /// Refused requests count against the caller too (default: they cost nothing).
    #[serde(default)]
    pub count_refused: bool,
    /// When Redis is unreachable; default: closed under /api/v1/auth, else local_fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_mode: Option<FailMode>,
    /// Overrides per verified role.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, RoleOverride>,
}

/// Whom a limit counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    /// Each verified user (per tenant); each client address for anonymous requests.
    #[default]
    UserOrAddress,
    /// Verified users only; anonymous requests are not counted by this limit.
    User,
    /// Anonymous requests only, per client address (e.g. logins).
    Address,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleOverride {
    #[serde(default)]
    pub unlimited: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

fn default_timeout_ms() -> u64 {
    20
}

fn default_local_fallback_keys() -> usize {
    10_000
}
