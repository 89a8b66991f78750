//! POST /api/v1/auth/logout: revokes the presented access token (its jti, else its hash)
//! and its whole family: the one the access token names (`fid`, when a refresh minted it)
//! and the one of a refresh token in the body. Each entry goes on the
//! revocation list like an operator's revoke (in force here at once, in Redis, announced to
//! every control plane) and lasts until its token or family expires, no longer. A repeat
//! answers the same: revoking a revoked key changes nothing.

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde::Serialize;
use stagedoor_filter_core::reply::Denial;
use stagedoor_filter_core::token::{bearer_token, compile_key, TokenError, Verifier};

use super::claims::Signer;
use super::preflight::{not_configured, preflight, refusal, store_unavailable, TokenEndpointState};
use crate::tls::listener::Peer;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggedOut {
    logged_out: bool,
    /// Whether the refresh token's family was revoked too.
    family_revoked: bool,
}

pub async fn logout(state: &TokenEndpointState, peer: &Peer, headers: &HeaderMap, body: &Bytes) -> Result<LoggedOut, Denial> {
    let (store, refresh_token) = preflight(state, peer, body)?;
    let view = state.publisher.view();
    let endpoint = view.registry.token_endpoint.as_ref().ok_or_else(not_configured)?;
    let now = (crate::clock::unix_ms() / 1000) as i64;
    let authorization: Vec<&str> = headers.get_all("authorization").iter().filter_map(|v| v.to_str().ok()).collect();
    if authorization.is_empty() && refresh_token.is_none() {
        return Err(refusal(401, "TOKEN_MISSING", "Send the access token (Authorization: Bearer) and, to end the session, the refreshToken"));
    }
    let mut targets: Vec<(String, i64)> = Vec::new();
    if !authorization.is_empty() {
        let token = bearer_token(&authorization).map_err(|e| refusal(401, e.code(), e.message()))?;
        targets.extend(access_targets(&view.registry, endpoint.family_lifetime_secs, token, now)?);
    }
    if let Some(token) = refresh_token {
        let signer = Signer { registry: &view.registry, endpoint };
        match signer.verify_refresh(&token, now, true) {
            Ok(claims) => targets.push((stagedoor_filter_core::revocation::family_key(&claims.fid), claims.fexp)),
            // A family past its absolute expiry is over already: nothing to revoke.
            Err(denial) if denial.code == TokenError::Expired.code() => {}
            Err(denial) => return Err(denial),
        }
    }
    // Both tokens may name the same family: one entry, with the later expiry.
    targets.sort();
    targets.dedup_by(|later, earlier| later.0 == earlier.0 && { earlier.1 = earlier.1.max(later.1); true });
    let family_revoked = targets.iter().any(|(key, _)| key.starts_with(stagedoor_filter_core::revocation::FAMILY_PREFIX));
    for (key, expires_at) in &targets {
        revoke(state, &store.url, key, *expires_at, now).await?;
    }
    crate::metrics::bump(&crate::metrics::LOGOUTS);
    Ok(LoggedOut { logged_out: true, family_revoked })
}

/// The access token's revocation key and expiry, and its family's when a refresh minted it
/// (until the `fexp` it carries; an access token without one, until the longest a family
/// lives), if it is a good token still alive. An expired token needs no entry; a forged one
/// gets none (the list is not a dump).
fn access_targets(registry: &crate::registry::Registry, family_lifetime_secs: u64, token: &str, now: i64) -> Result<Vec<(String, i64)>, Denial> {
    let leeway = i64::try_from(registry.auth.leeway_secs.unwrap_or(stagedoor_filter_core::config::DEFAULT_LEEWAY_SECS)).unwrap_or(0);
    let verifier = Verifier {
        issuer: registry.auth.issuer.clone(),
        audience: registry.auth.audience.clone(),
        leeway_secs: leeway,
        // The registry is validated: a key that does not compile never reached a filter either.
        keys: registry.keys.iter().filter_map(|k| compile_key(k).ok()).collect(),
        // Tokens the gateway minted only: an identity provider's have no family to end, and
        // their jti is revoked through `stagedoor token revoke` like any other.
        jwks_issuers: Vec::new(),
    };
    let verified = match verifier.verify(token, now) {
        Ok(verified) => verified,
        Err(TokenError::Expired) => return Ok(Vec::new()),
        Err(e) => return Err(refusal(401, e.code(), e.message())),
    };
    let mut targets = vec![(verified.revocation_key, verified.exp.saturating_add(leeway))];
    if let Some(family) = verified.family_revocation_key {
        let fexp = verifier
            .verify_signature(token)
            .ok()
            .and_then(|payload| serde_json::from_slice::<serde_json::Value>(&payload).ok())
            .and_then(|claims| claims.get("fexp").and_then(serde_json::Value::as_i64))
            .unwrap_or_else(|| now.saturating_add(i64::try_from(family_lifetime_secs).unwrap_or(i64::MAX / 4)));
        targets.push((family, fexp));
    }
    Ok(targets)
}

/// One entry on the list here, then in Redis; a Redis that cannot take it now gets it from
/// the revocation sync's write-back, and the caller a 503 to try again (which is harmless).
async fn revoke(state: &TokenEndpointState, url: &str, key: &str, expires_at: i64, now: i64) -> Result<(), Denial> {
    let generation = state
        .revocations
        .lock()
        .map(|mut list| {
            list.revoke(key.to_owned(), expires_at);
            list.redis_generation()
        })
        .map_err(|_| refusal(500, "INTERNAL_ERROR", "The revocation list is unavailable"))?;
    match crate::discovery::revocation_sync::store(url, key, expires_at, now).await {
        Ok(()) => {
            if let Ok(mut list) = state.revocations.lock() {
                list.mark_stored(key, expires_at, generation);
            }
            Ok(())
        }
        Err(e) => {
            state.write_back.wake();
            tracing::warn!(error = %e, "logout: revoked here, redis unavailable; written back when it returns");
            Err(store_unavailable("redis did not take the revocation"))
        }
    }
}
