//! Claim checks on a token whose signature is already verified.

use serde::Deserialize;

use super::{revocation_key, TokenError, Verifier};

#[derive(Deserialize)]
pub(super) struct RawClaims {
    #[serde(default)]
    sub: Option<serde_json::Value>,
    #[serde(default)]
    iss: Option<serde_json::Value>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    #[serde(default)]
    exp: Option<serde_json::Value>,
    #[serde(default)]
    nbf: Option<serde_json::Value>,
    #[serde(default)]
    iat: Option<serde_json::Value>,
    #[serde(default, rename = "type")]
    token_type: Option<serde_json::Value>,
    #[serde(default)]
    tenant_id: Option<serde_json::Value>,
    #[serde(default)]
    role: Option<serde_json::Value>,
    #[serde(default)]
    permissions: Option<serde_json::Value>,
    #[serde(default)]
    venues: Option<serde_json::Value>,
    #[serde(default)]
    jti: Option<serde_json::Value>,
    /// The refresh-token family an access token was minted from (the token endpoint's).
    #[serde(default)]
    fid: Option<serde_json::Value>,
}

/// What a verified token says about its caller, in the form the headers carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub subject: String,
    pub tenant: String,
    pub role: Option<String>,
    /// The `permissions` claim; when absent the role's defaults apply.
    pub permissions: Option<Vec<String>>,
    pub venues: Option<Vec<String>>,
    pub exp: i64,
    pub nbf: Option<i64>,
    pub revocation_key: String,
    /// `family:<fid>` for a token minted by a refresh: revoking the family revokes it.
    pub family_revocation_key: Option<String>,
}

fn numeric_date(value: &Option<serde_json::Value>, name: &'static str) -> Result<Option<i64>, TokenError> {
    match value {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or(TokenError::InvalidClaims(name)),
    }
}

/// A value that goes into a header: no control characters, and for list items no commas,
/// so the comma-joined header cannot be split differently than the claim was written.
fn header_safe(value: &str, in_list: bool) -> bool {
    !value.is_empty() && !value.chars().any(|c| c.is_control() || (in_list && c == ','))
}

fn string_claim(value: &Option<serde_json::Value>) -> Option<&str> {
    value.as_ref().and_then(|v| v.as_str())
}

fn list_claim(value: &Option<serde_json::Value>, name: &'static str) -> Result<Option<Vec<String>>, TokenError> {
    let Some(value) = value else { return Ok(None) };
    let items = value.as_array().ok_or(TokenError::InvalidClaims(name))?;
    items
        .iter()
        .map(|item| match item.as_str() {
            Some(s) if header_safe(s, true) => Ok(s.to_owned()),
            _ => Err(TokenError::InvalidClaims(name)),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

impl RawClaims {
    /// `issuer`: the one the verifying key vouches for.
    pub(super) fn check(self, verifier: &Verifier, issuer: &str, token: &str, now: i64) -> Result<VerifiedToken, TokenError> {
        let exp = numeric_date(&self.exp, "exp is not a number")?.ok_or(TokenError::InvalidClaims("exp is required"))?;
        let nbf = numeric_date(&self.nbf, "nbf is not a number")?;
        if let Some(iat) = numeric_date(&self.iat, "iat is not a number")? {
            if iat > now.saturating_add(verifier.leeway_secs) {
                return Err(TokenError::IssuedInFuture);
            }
        }
        if string_claim(&self.iss) != Some(issuer) {
            return Err(TokenError::WrongIssuer);
        }
        let audience_ok = match &self.aud {
            Some(serde_json::Value::String(aud)) => *aud == verifier.audience,
            Some(serde_json::Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(verifier.audience.as_str())),
            _ => false,
        };
        if !audience_ok {
            return Err(TokenError::WrongAudience);
        }
        if string_claim(&self.token_type) != Some("access") {
            return Err(TokenError::WrongType);
        }
        let tenant = match string_claim(&self.tenant_id) {
            Some(t) if !t.trim().is_empty() => t,
            _ => return Err(TokenError::MissingTenant),
        };
        if !header_safe(tenant, true) {
            return Err(TokenError::InvalidClaims("tenant_id has characters a header cannot carry"));
        }
        let subject = match string_claim(&self.sub) {
            Some(s) if !s.is_empty() => s,
            _ => return Err(TokenError::MissingSubject),
        };
        if !header_safe(subject, true) {
            return Err(TokenError::InvalidClaims("sub has characters a header cannot carry"));
        }
        let role = match &self.role {
            None => None,
            Some(serde_json::Value::String(r)) if header_safe(r, true) => Some(r.clone()),
            Some(_) => return Err(TokenError::InvalidClaims("role is not a plain string")),
        };
        let jti = match &self.jti {
            None => None,
            Some(serde_json::Value::String(j)) => Some(j.as_str()),
            Some(_) => return Err(TokenError::InvalidClaims("jti is not a string")),
        };
        let family_revocation_key = match &self.fid {
            None => None,
            Some(serde_json::Value::String(fid)) if header_safe(fid, true) => Some(crate::revocation::family_key(fid)),
            Some(_) => return Err(TokenError::InvalidClaims("fid is not a plain string")),
        };
        Ok(VerifiedToken {
            subject: subject.to_owned(),
            tenant: tenant.to_owned(),
            role,
            permissions: list_claim(&self.permissions, "permissions must be a list of plain strings")?,
            venues: list_claim(&self.venues, "venues must be a list of plain strings")?,
            exp,
            nbf,
            revocation_key: revocation_key(jti, token),
            family_revocation_key,
        })
    }
}

impl VerifiedToken {
    /// The time checks, run on every use: a cached token expires like a fresh one.
    pub fn check_time(&self, now: i64, leeway: i64) -> Result<(), TokenError> {
        if now > self.exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = self.nbf {
            if nbf > now.saturating_add(leeway) {
                return Err(TokenError::NotYetValid);
            }
        }
        Ok(())
    }
}
