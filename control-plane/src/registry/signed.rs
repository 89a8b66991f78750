//! The registry's `signed_requests` section: the callers' keys for signed requests, with
//! `secret_env` resolved from this process's environment, and written back redacted. What
//! a good key is (id, length, unique) is the filter's compiler's to say
//! (`stagedoor_filter_core::signature`), run on the config the control plane pushes.

use serde::{Deserialize, Serialize};
use stagedoor_filter_core::signature::{SigningKeyConfig, DEFAULT_REPLAY_TIMEOUT_MS, DEFAULT_TOLERANCE_SECS};

use super::REDACTED;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRequestsSpec {
    /// How far `x-timestamp` may be from now, either way (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance_secs: Option<u64>,
    /// How long the filter waits for the replay check before answering 503 (default 250).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_timeout_ms: Option<u64>,
    pub keys: Vec<SigningKeySpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeySpec {
    /// What the caller sends in `x-signature-key-id`.
    pub id: String,
    /// The shared secret written in the file: for development only...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// ...or the control plane's environment variable that holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// The caller signs the original gateway's `timestamp + "." + body`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub legacy_body_only: bool,
}

/// The section with its secrets resolved, for the filter config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignedRequests {
    pub tolerance_secs: u64,
    pub replay_timeout_ms: u64,
    pub keys: Vec<SigningKeyConfig>,
}

/// `(field, reason)` of a key whose secret cannot be had.
pub fn resolve(spec: &SignedRequestsSpec, env: &dyn Fn(&str) -> Option<String>) -> Result<SignedRequests, (String, String)> {
    let SignedRequestsSpec { tolerance_secs, replay_timeout_ms, keys } = spec;
    let keys = keys
        .iter()
        .enumerate()
        .map(|(i, SigningKeySpec { id, secret, secret_env, legacy_body_only })| {
            let field = |name: &str| format!("keys[{i}] ({id:?}).{name}");
            let secret = match (secret, secret_env) {
                (Some(secret), None) => secret.clone(),
                (None, Some(var)) => {
                    env(var).ok_or_else(|| (field("secret_env"), format!("{var} is not set in the control plane's environment")))?
                }
                _ => return Err((field("secret"), String::from("give exactly one of `secret` or `secret_env`"))),
            };
            Ok(SigningKeyConfig { id: id.clone(), secret, legacy_body_only: *legacy_body_only })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SignedRequests {
        tolerance_secs: tolerance_secs.unwrap_or(DEFAULT_TOLERANCE_SECS),
        replay_timeout_ms: replay_timeout_ms.unwrap_or(DEFAULT_REPLAY_TIMEOUT_MS),
        keys,
    })
}

pub fn redacted(spec: &SignedRequestsSpec, redact: bool) -> SignedRequestsSpec {
    let mut spec = spec.clone();
    if redact {
        for key in spec.keys.iter_mut().filter(|k| k.secret.is_some()) {
            key.secret = Some(String::from(REDACTED));
        }
    }
    spec
}
