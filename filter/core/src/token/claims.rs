//! Claim checks on a token whose signature is already verified.

use serde::Deserialize;

use super::{revocation_key, TokenError, Verifier};

/// The registered and TicketToken claims a token may carry, each as the JSON it holds
/// (`None`: absent or null); [`RawClaims::check`] reads them.
#[derive(Default)]
pub(super) struct RawClaims {
    sub: Option<serde_json::Value>,
    iss: Option<serde_json::Value>,
    aud: Option<serde_json::Value>,
    exp: Option<serde_json::Value>,
    nbf: Option<serde_json::Value>,
    iat: Option<serde_json::Value>,
    /// `type`.
    token_type: Option<serde_json::Value>,
    tenant_id: Option<serde_json::Value>,
    role: Option<serde_json::Value>,
    permissions: Option<serde_json::Value>,
    venues: Option<serde_json::Value>,
    jti: Option<serde_json::Value>,
    /// The refresh-token family an access token was minted from (the token endpoint's).
    fid: Option<serde_json::Value>,
}

impl RawClaims {
    /// The field a claim's name fills, and its bit among the names seen.
    fn slot(&mut self, name: &str) -> Option<(&mut Option<serde_json::Value>, u16)> {
        let slot = match name {
            "sub" => (&mut self.sub, 0),
            "iss" => (&mut self.iss, 1),
            "aud" => (&mut self.aud, 2),
            "exp" => (&mut self.exp, 3),
            "nbf" => (&mut self.nbf, 4),
            "iat" => (&mut self.iat, 5),
            "type" => (&mut self.token_type, 6),
            "tenant_id" => (&mut self.tenant_id, 7),
            "role" => (&mut self.role, 8),
            "permissions" => (&mut self.permissions, 9),
            "venues" => (&mut self.venues, 10),
            "jti" => (&mut self.jti, 11),
            "fid" => (&mut self.fid, 12),
            _ => return None,
        };
        Some((slot.0, 1 << slot.1))
    }
}

/// Written out rather than derived: the claims set is a JSON object (RFC 7519 4), so no
/// array form, a claim named twice is refused (null the first time or not), and other
/// claims are skipped. The derived visitor also took arrays, and was the module's largest
/// function (18 KB; policy.rs `OUT_OF_LINE`).
impl<'de> Deserialize<'de> for RawClaims {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ClaimsVisitor)
    }
}

struct ClaimsVisitor;

impl<'de> serde::de::Visitor<'de> for ClaimsVisitor {
    type Value = RawClaims;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawClaims, A::Error> {
        let mut claims = RawClaims::default();
        let mut seen = 0u16;
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let Some((slot, bit)) = claims.slot(&name) else {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            };
            if seen & bit != 0 {
                return Err(serde::de::Error::custom(format_args!("the claim {name:?} appears twice")));
            }
            seen |= bit;
            *slot = map.next_value::<Option<serde_json::Value>>()?;
        }
        Ok(claims)
    }
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
    #[inline(never)] // a cold token only (policy.rs `OUT_OF_LINE`)
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

#[cfg(test)]
mod parse_tests {
    use super::RawClaims;

    fn parse(json: &str) -> Result<RawClaims, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn an_object_fills_the_named_claims_and_skips_the_rest() {
        let claims = parse(r#"{"sub":"u1","s\u0075b2":1,"type":"access","venues":["v1"],"extra":{"a":[1,2]},"nbf":null}"#).unwrap();
        assert_eq!(claims.sub, Some(serde_json::json!("u1")));
        assert_eq!(claims.token_type, Some(serde_json::json!("access")));
        assert_eq!(claims.venues, Some(serde_json::json!(["v1"])));
        assert_eq!(claims.nbf, None, "null is absent");
        assert_eq!(claims.exp, None);
        let escaped = parse(r#"{"s\u0075b":"u2"}"#).unwrap();
        assert_eq!(escaped.sub, Some(serde_json::json!("u2")), "a name is read unescaped");
    }

    #[test]
    fn a_claim_named_twice_is_refused_even_after_null() {
        for json in [r#"{"sub":"a","sub":"b"}"#, r#"{"exp":null,"exp":1}"#, r#"{"type":"refresh","iss":"x","type":"access"}"#] {
            assert!(parse(json).is_err(), "{json}");
        }
        assert!(parse(r#"{"other":1,"other":2}"#).is_ok(), "a claim nobody reads is skipped, once or twice");
    }

    #[test]
    fn only_an_object_is_a_claims_set() {
        for json in [r#"["u1","tickettoken"]"#, "null", "1", r#""sub""#, "[]"] {
            assert!(parse(json).is_err(), "{json}");
        }
    }
}
