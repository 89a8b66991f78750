//! The registry's `token_endpoint`: where Envoy reaches the refresh and logout endpoint that
//! `stagedoor serve --token-endpoint` answers, the refresh tokens' own key, and the
//! lifetimes. Parsed here (shape) and compiled here (rules), naming the field at fault.

use serde::{Deserialize, Serialize};

use super::instance::InstanceSpec;
use stagedoor_filter_core::config::KeyConfig;

/// The paths the gateway answers itself; Envoy routes them (and whatever is under them)
/// to the token endpoint ahead of any service's prefix.
pub const REFRESH_PATH: &str = "/api/v1/auth/refresh";
pub const LOGOUT_PATH: &str = "/api/v1/auth/logout";

pub const DEFAULT_ACCESS_TTL_SECS: u64 = 900;
/// The original gateway's `JWT_REFRESH_EXPIRES_IN=7d`: a family never outlives it.
pub const DEFAULT_FAMILY_LIFETIME_SECS: u64 = 7 * 86_400;
pub const DEFAULT_IDLE_SECS: u64 = 86_400;
pub const DEFAULT_GRACE_SECS: u64 = 10;
/// The bound: a longer grace hands a stolen predecessor the successor for longer.
pub const MAX_GRACE_SECS: u64 = 60;
/// The longest lifetime of anything the gateway mints or reads as a duration (`stagedoor
/// token --ttl`, a family): ten years, far beyond any token or heartbeat, and far below
/// where seconds overflow (a JWT `exp` is an i64, Redis `EX` too).
pub const MAX_TTL: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 86_400);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEndpointSpec {
    /// Where Envoy reaches the token endpoint (`stagedoor serve --token-endpoint`).
    pub instance: InstanceSpec,
    /// Signs and verifies refresh tokens only; never one of `auth.keys`.
    pub refresh_key: RefreshKeySpec,
    /// The `auth.keys` entry (by kid; absent: the key without a kid) that signs the access
    /// tokens a refresh mints. It must be an HMAC key with its secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_kid: Option<String>,
    #[serde(default = "default_access_ttl")]
    pub access_ttl_secs: u64,
    /// A family's absolute lifetime from its first token; rotation never extends it.
    #[serde(default = "default_family_lifetime")]
    pub family_lifetime_secs: u64,
    /// A refresh token unused this long expires (never past the family's lifetime).
    #[serde(default = "default_idle")]
    pub idle_secs: u64,
    /// How long the immediate predecessor still gets its successor pair back.
    #[serde(default = "default_grace")]
    pub grace_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshKeySpec {
    pub kid: String,
    /// Literal (development only) or from the control plane's environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
}

fn default_access_ttl() -> u64 {
    DEFAULT_ACCESS_TTL_SECS
}
fn default_family_lifetime() -> u64 {
    DEFAULT_FAMILY_LIFETIME_SECS
}
fn default_idle() -> u64 {
    DEFAULT_IDLE_SECS
}
fn default_grace() -> u64 {
    DEFAULT_GRACE_SECS
}

/// The token endpoint's settings with both secrets resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenEndpoint {
    pub address: String,
    pub port: u16,
    pub refresh_kid: String,
    pub refresh_secret: String,
    pub access_kid: Option<String>,
    pub access_secret: String,
    pub access_ttl_secs: u64,
    pub family_lifetime_secs: u64,
    pub idle_secs: u64,
    pub grace_secs: u64,
}

/// (field, reason): the caller names the item `token_endpoint`.
pub type TokenEndpointFault = (String, String);

fn fault(field: &str, reason: impl Into<String>) -> TokenEndpointFault {
    (field.to_owned(), reason.into())
}

/// The spec's rules. `keys` are the static `auth.keys` with their secrets resolved.
pub fn compile(
    spec: &TokenEndpointSpec,
    keys: &[KeyConfig],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<TokenEndpoint, TokenEndpointFault> {
    let TokenEndpointSpec { instance, refresh_key, access_kid, access_ttl_secs, family_lifetime_secs, idle_secs, grace_secs } = spec;
    if !super::instance::is_host(&instance.address) {
        return Err(fault("instance.address", "must be an IP address or a DNS name"));
    }
    if instance.port == 0 {
        return Err(fault("instance.port", "must be 1-65535"));
    }
    let refresh_secret = match (&refresh_key.secret, &refresh_key.secret_env) {
        (Some(secret), None) => secret.clone(),
        (None, Some(var)) => env(var).ok_or_else(|| fault("refresh_key.secret_env", format!("{var} is not set in the control plane's environment")))?,
        _ => return Err(fault("refresh_key.secret", "give exactly one of `secret` or `secret_env`")),
    };
    // RFC 7518 3.2: an HS256 key is at least as long as the hash.
    if refresh_secret.len() < 32 {
        return Err(fault("refresh_key.secret", "an HS256 secret needs at least 32 bytes"));
    }
    if refresh_key.kid.is_empty() || !refresh_key.kid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(fault("refresh_key.kid", "must be printable ASCII without spaces"));
    }
    // Distinct from every access key, so no refresh token ever verifies as an access token.
    if keys.iter().any(|k| k.kid.as_deref() == Some(refresh_key.kid.as_str())) {
        return Err(fault("refresh_key.kid", format!("{:?} is an access-token key's kid in auth.keys", refresh_key.kid)));
    }
    if keys.iter().any(|k| k.secret.as_deref() == Some(refresh_secret.as_str())) {
        return Err(fault("refresh_key.secret", "is also an access-token key's secret in auth.keys; give refresh tokens their own"));
    }
    let signing = keys.iter().find(|k| k.kid == *access_kid).ok_or_else(|| {
        fault("access_kid", match access_kid {
            Some(kid) => format!("no key in auth.keys has kid {kid:?}"),
            None => String::from("no key in auth.keys is without a kid; name the signing key's kid"),
        })
    })?;
    let access_secret = match (&signing.secret, signing.algorithms.iter().any(|a| a == "HS256")) {
        (Some(secret), true) => secret.clone(),
        _ => return Err(fault("access_kid", "the key must be an HMAC secret that allows HS256")),
    };
    check_seconds("access_ttl_secs", *access_ttl_secs, 10, 86_400)?;
    check_seconds("family_lifetime_secs", *family_lifetime_secs, 10, MAX_TTL.as_secs())?;
    check_seconds("idle_secs", *idle_secs, 10, *family_lifetime_secs)?;
    check_seconds("grace_secs", *grace_secs, 0, MAX_GRACE_SECS)?;
    Ok(TokenEndpoint {
        address: instance.address.clone(),
        port: instance.port,
        refresh_kid: refresh_key.kid.clone(),
        refresh_secret,
        access_kid: access_kid.clone(),
        access_secret,
        access_ttl_secs: *access_ttl_secs,
        family_lifetime_secs: *family_lifetime_secs,
        idle_secs: *idle_secs,
        grace_secs: *grace_secs,
    })
}

fn check_seconds(field: &str, value: u64, min: u64, max: u64) -> Result<(), TokenEndpointFault> {
    if value < min || value > max {
        return Err(fault(field, format!("{value} is outside {min}..={max} seconds")));
    }
    Ok(())
}

/// The spec as the served registry shows it: a literal refresh secret redacted.
pub fn redacted(spec: &TokenEndpointSpec, redact: bool) -> TokenEndpointSpec {
    let mut spec = spec.clone();
    if redact && spec.refresh_key.secret.is_some() {
        spec.refresh_key.secret = Some(String::from(super::REDACTED));
    }
    spec
}
