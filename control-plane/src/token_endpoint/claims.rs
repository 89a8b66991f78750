//! Refresh tokens and the access tokens a refresh mints: their claims, signing, and the
//! refresh token's checks. Pure: time comes in as an argument, and the same successor
//! (jti, rotation time) always signs to the same bytes (HS256 is deterministic), which is
//! how a predecessor in its grace gets the pair it was given before without Redis ever
//! holding a token.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use stagedoor_filter_core::config::KeyConfig;
use stagedoor_filter_core::reply::Denial;
use stagedoor_filter_core::token::{compile_key, TokenError, Verifier};

use crate::registry::token_endpoint::TokenEndpoint;
use crate::registry::Registry;

/// The `type` of a refresh token; access tokens say `access` (the filter accepts only those).
pub const REFRESH_TYPE: &str = "refresh";

/// A refresh token's audience: the access tokens' with this suffix, so neither is ever the
/// other's, whatever the registry's audience is.
pub fn refresh_audience(access_audience: &str) -> String {
    format!("{access_audience}:refresh")
}

/// A refresh token's claims, in the order they are signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshClaims {
    pub iss: String,
    pub aud: String,
    #[serde(rename = "type")]
    pub token_type: String,
    pub sub: String,
    pub tenant_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub jti: String,
    /// The family id: the first token's jti, carried by every member and every access token.
    pub fid: String,
    /// The family's absolute expiry (unix seconds), copied unchanged into every successor.
    pub fexp: i64,
    pub iat: i64,
    /// The idle expiry: `iat` + the idle lifetime, never past `fexp`.
    pub exp: i64,
}

/// An access token's claims, as the filter reads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    #[serde(rename = "type")]
    token_type: &'static str,
    sub: &'a str,
    tenant_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    jti: String,
    fid: &'a str,
    /// The family's absolute expiry, so a logout with this token alone knows how long the
    /// family's revocation must last.
    fexp: i64,
    iat: i64,
    exp: i64,
}

/// What signs and checks tokens here, from the registry's `auth` and `token_endpoint`.
pub struct Signer<'r> {
    pub registry: &'r Registry,
    pub endpoint: &'r TokenEndpoint,
}

/// A rotation's result: what the client gets back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    /// Seconds the access token is good for.
    pub expires_in: u64,
}

impl<'r> Signer<'r> {
    /// A new family's first token (`stagedoor token --refresh`, or an auth service with the
    /// refresh key): its jti is the family id, which is how the script knows a family may begin.
    pub fn first_refresh_claims(&self, fid: &str, sub: &str, tenant: &str, role: Option<&str>, now: i64) -> RefreshClaims {
        let fexp = now + secs(self.endpoint.family_lifetime_secs);
        RefreshClaims {
            iss: self.registry.auth.issuer.clone(),
            aud: refresh_audience(&self.registry.auth.audience),
            token_type: REFRESH_TYPE.to_owned(),
            sub: sub.to_owned(),
            tenant_id: tenant.to_owned(),
            role: role.map(str::to_owned),
            jti: fid.to_owned(),
            fid: fid.to_owned(),
            fexp,
            iat: now,
            exp: (now + secs(self.endpoint.idle_secs)).min(fexp),
        }
    }

    pub fn sign_refresh(&self, claims: &RefreshClaims) -> Result<String, jsonwebtoken::errors::Error> {
        let header = Header { kid: Some(self.endpoint.refresh_kid.clone()), ..Header::new(Algorithm::HS256) };
        encode(&header, claims, &EncodingKey::from_secret(self.endpoint.refresh_secret.as_bytes()))
    }

    /// The successor pair of `presented` for the successor `jti` rotated at `at_ms`: the
    /// same inputs always give the same two tokens.
    pub fn successor_pair(&self, presented: &RefreshClaims, jti: &str, at_ms: i64) -> Result<TokenPair, jsonwebtoken::errors::Error> {
        let iat = at_ms.div_euclid(1000);
        let refresh = RefreshClaims { jti: jti.to_owned(), iat, exp: (iat + secs(self.endpoint.idle_secs)).min(presented.fexp), ..presented.clone() };
        let access = AccessClaims {
            iss: &self.registry.auth.issuer,
            aud: &self.registry.auth.audience,
            token_type: "access",
            sub: &presented.sub,
            tenant_id: &presented.tenant_id,
            role: presented.role.as_deref(),
            // Its own revocation key, apart from the refresh token's jti.
            jti: format!("{jti}.a"),
            fid: &presented.fid,
            fexp: presented.fexp,
            iat,
            // An access token never outlives its family either.
            exp: (iat + secs(self.endpoint.access_ttl_secs)).min(presented.fexp),
        };
        let header = Header { kid: self.endpoint.access_kid.clone(), ..Header::new(Algorithm::HS256) };
        let access_token = encode(&header, &access, &EncodingKey::from_secret(self.endpoint.access_secret.as_bytes()))?;
        Ok(TokenPair {
            access_token,
            refresh_token: self.sign_refresh(&refresh)?,
            token_type: "Bearer",
            expires_in: u64::try_from(access.exp - iat).unwrap_or(0),
        })
    }

    /// A refresh token's signature (the refresh key only) and claims at `now`. With
    /// `allow_expired` (logout) an idle-expired token still names its family.
    pub fn verify_refresh(&self, token: &str, now: i64, allow_expired: bool) -> Result<RefreshClaims, Denial> {
        let verifier = Verifier {
            issuer: self.registry.auth.issuer.clone(),
            audience: refresh_audience(&self.registry.auth.audience),
            leeway_secs: 0,
            keys: vec![compile_key(&KeyConfig {
                kid: Some(self.endpoint.refresh_kid.clone()),
                algorithms: vec![String::from("HS256")],
                secret: Some(self.endpoint.refresh_secret.clone()),
                jwk: None,
                issuer: None,
            })
            .map_err(|_| denial(TokenError::UnknownKey, "The refresh key cannot be used"))?],
            jwks_issuers: Vec::new(),
        };
        stagedoor_filter_core::token::check_token_chars(token).map_err(|e| denial(e, &e.message()))?;
        let payload = verifier.verify_signature(token).map_err(|e| match e {
            // Only one key verifies refresh tokens: a token under any other (an access
            // token) is not a refresh token at all.
            TokenError::UnknownKey => denial(TokenError::WrongType, "Token is not a refresh token"),
            other => denial(other, &other.message()),
        })?;
        let claims: RefreshClaims = serde_json::from_slice(&payload)
            .map_err(|_| denial(TokenError::WrongType, "Token is not a refresh token (its claims are not a refresh token's)"))?;
        if claims.token_type != REFRESH_TYPE {
            return Err(denial(TokenError::WrongType, "Token is not a refresh token"));
        }
        if claims.aud != verifier.audience {
            return Err(denial(TokenError::WrongAudience, "Token audience is not the refresh tokens'"));
        }
        if claims.iss != verifier.issuer {
            return Err(denial(TokenError::WrongIssuer, &TokenError::WrongIssuer.message()));
        }
        // The registry's clock-skew allowance, as for access tokens (an auth service may mint the first).
        let leeway = self.registry.auth.leeway_secs.unwrap_or(stagedoor_filter_core::config::DEFAULT_LEEWAY_SECS);
        if claims.iat > now.saturating_add(i64::try_from(leeway).unwrap_or(0)) {
            return Err(denial(TokenError::IssuedInFuture, &TokenError::IssuedInFuture.message()));
        }
        // The family's absolute expiry holds even for logout: after it the family is gone.
        if now >= claims.fexp {
            return Err(denial(TokenError::Expired, "The refresh token's family has expired; log in again"));
        }
        if !allow_expired && now >= claims.exp {
            return Err(denial(TokenError::Expired, "Refresh token has expired"));
        }
        if claims.fid.is_empty() || claims.jti.is_empty() || !is_plain(&claims.fid) || !is_plain(&claims.jti) {
            return Err(denial(TokenError::InvalidClaims(""), "Refresh token's jti and fid must be plain identifiers"));
        }
        Ok(claims)
    }
}

/// Printable ASCII without spaces, bounded: these go into Redis keys and log lines.
fn is_plain(id: &str) -> bool {
    id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

fn secs(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX / 4)
}

pub fn denial(error: TokenError, message: &str) -> Denial {
    Denial { status: 401, code: error.code(), message: message.to_owned() }
}
