//! What a route does when the shared count (Redis) cannot be reached.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Admit: availability over the limit.
    Open,
    /// Refuse with 503: for routes where a guess costs more than an outage (password
    /// guessing on logins, token minting on refreshes).
    Closed,
    /// Count in this process alone until the shared count is back: the limit then holds per
    /// replica, a looser bound than the fleet's but still a bound.
    LocalFallback,
}

/// Logins, refreshes and the rest of the auth service's routes.
pub const DEFAULT_CLOSED: &str = "/api/v1/auth";

/// The defaults: fail closed on logins and refreshes (everything under
/// /api/v1/auth/), elsewhere fail open with a local fallback.
pub fn default_fail_mode(route_prefix: &str) -> FailMode {
    let under_auth = route_prefix
        .strip_prefix(DEFAULT_CLOSED)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    if under_auth {
        FailMode::Closed
    } else {
        FailMode::LocalFallback
    }
}

/// A decision taken without the shared count, as metrics and /status count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FallbackOutcome {
    OpenAdmitted,
    ClosedRefused,
    LocalAdmitted,
    LocalRefused,
}

impl FallbackOutcome {
    pub fn name(&self) -> &'static str {
        match self {
            FallbackOutcome::OpenAdmitted => "open_admitted",
            FallbackOutcome::ClosedRefused => "closed_refused",
            FallbackOutcome::LocalAdmitted => "local_admitted",
            FallbackOutcome::LocalRefused => "local_refused",
        }
    }
}
