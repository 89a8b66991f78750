//! `signed_requests` and each service's signed routes, checked and compiled.

use crate::config::RuleConfig;
use crate::path::PathReadings;
use crate::rbac::Rule;

use super::{ReplayConfig, SignedRequestsConfig, SignedRouteConfig, SigningKeyConfig, MAX_TOLERANCE_SECS, MIN_SECRET_BYTES};

/// Why `signed_requests` or a signed route was refused: the field below it and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SignatureConfigError {
    pub field: String,
    pub reason: String,
}

fn error(field: impl Into<String>, reason: impl Into<String>) -> SignatureConfigError {
    SignatureConfigError { field: field.into(), reason: reason.into() }
}

/// The callers' keys and the window, as the filter checks requests against them.
#[derive(Debug, Clone)]
pub struct SignaturePolicy {
    pub tolerance_secs: i64,
    keys: Vec<SigningKey>,
    pub replay: ReplayConfig,
}

#[derive(Debug, Clone)]
pub struct SigningKey {
    pub id: String,
    pub secret: Vec<u8>,
    pub legacy_body_only: bool,
}

impl SignaturePolicy {
    pub fn compile(config: &SignedRequestsConfig) -> Result<Self, SignatureConfigError> {
        let SignedRequestsConfig { tolerance_secs, keys: key_configs, replay } = config;
        if *tolerance_secs == 0 || *tolerance_secs > MAX_TOLERANCE_SECS {
            return Err(error("tolerance_secs", format!("must be 1..={MAX_TOLERANCE_SECS}")));
        }
        let ReplayConfig { cluster, timeout_ms } = replay;
        if cluster.is_empty() {
            return Err(error("replay.cluster", "must not be empty"));
        }
        if *timeout_ms == 0 || *timeout_ms > 10_000 {
            return Err(error("replay.timeout_ms", "must be 1..=10000"));
        }
        if key_configs.is_empty() {
            return Err(error("keys", "needs at least one key"));
        }
        let mut keys: Vec<SigningKey> = Vec::with_capacity(key_configs.len());
        for (i, SigningKeyConfig { id, secret, legacy_body_only }) in key_configs.iter().enumerate() {
            let field = |name: &str| format!("keys[{i}] ({id:?}).{name}");
            if !is_key_id(id) {
                return Err(error(field("id"), "must be 1 to 64 of [A-Za-z0-9._-]"));
            }
            if keys.iter().any(|k| k.id == *id) {
                return Err(error(field("id"), "is used twice"));
            }
            if secret.len() < MIN_SECRET_BYTES {
                return Err(error(field("secret"), format!("must be at least {MIN_SECRET_BYTES} bytes")));
            }
            keys.push(SigningKey { id: id.clone(), secret: secret.as_bytes().to_vec(), legacy_body_only: *legacy_body_only });
        }
        let tolerance_secs = i64::try_from(*tolerance_secs).map_err(|_| error("tolerance_secs", "too large"))?;
        Ok(Self { tolerance_secs, keys, replay: replay.clone() })
    }

    pub fn key(&self, id: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// How long a verified signature is remembered: a signature is usable from
    /// `timestamp - tolerance` to `timestamp + tolerance`, so twice the tolerance covers
    /// every moment it could be replayed.
    pub fn replay_window_secs(&self) -> i64 {
        self.tolerance_secs * 2
    }
}

pub fn is_key_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Which requests of a service must be signed.
#[derive(Debug, Clone, Default)]
pub struct SignedRoutes {
    /// Every request of the service.
    all: bool,
    routes: Vec<Rule>,
}

impl SignedRoutes {
    pub fn compile(all: bool, routes: &[SignedRouteConfig]) -> Result<Self, SignatureConfigError> {
        let routes = routes
            .iter()
            .enumerate()
            .map(|(i, SignedRouteConfig { method, path })| {
                // The rule matcher's method and path rules, so a signed route covers exactly
                // what a rule with the same method and path covers.
                let rule = RuleConfig::route(method, path);
                Rule::compile(&rule).map_err(|e| error(format!("signed_routes[{i}]"), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { all, routes })
    }

    pub fn is_empty(&self) -> bool {
        !self.all && self.routes.is_empty()
    }

    /// A request must be signed when any reading of its path is a signed route (a variant
    /// that reaches the same handler must not get in unsigned).
    pub fn require(&self, method: &str, readings: &PathReadings<'_>) -> bool {
        self.all || readings.each().any(|path| self.routes.iter().any(|r| r.matches(method, path).is_some()))
    }
}
