//! What every call of the token endpoint checks first (who sent it, the store, the body) and
//! the refusals both routes share; the routes are in `http` (refresh) and `logout`.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use serde::Deserialize;
use stagedoor_filter_core::reply::Denial;

use super::store::TokenStore;
use crate::discovery::revocation_sync::WriteBack;
use crate::revocations::RevocationStore;
use crate::shared_publisher::SharedPublisher;
use crate::tls::identity::PeerIdentity;
use crate::tls::listener::Peer;

#[derive(Clone)]
pub struct TokenEndpointState {
    pub publisher: SharedPublisher,
    pub revocations: Arc<Mutex<RevocationStore>>,
    /// None without --redis: every call answers 503 (never an in-memory family that a
    /// restart forgets).
    pub store: Option<Arc<TokenStore>>,
    pub write_back: WriteBack,
    pub insecure: bool,
}

pub(super) fn refusal(status: u16, code: &'static str, message: impl Into<String>) -> Denial {
    Denial { status, code, message: message.into() }
}

pub(super) fn store_unavailable(why: &str) -> Denial {
    refusal(503, "TOKEN_STORE_UNAVAILABLE", format!("The token store is unavailable ({why}); try again shortly"))
}

/// Only Envoys call the endpoint: the client address it logs comes from their header.
pub(super) fn check_peer(peer: &Peer, insecure: bool) -> Result<(), Denial> {
    match (&peer.identity, insecure) {
        (_, true) | (Some(PeerIdentity::Envoy { .. }), _) => Ok(()),
        _ => Err(refusal(403, "FORBIDDEN", "The token endpoint answers the gateway's Envoys only")),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RefreshBody {
    #[serde(default)]
    pub refresh_token: Option<String>,
}

pub(super) fn read_body(body: &Bytes) -> Result<RefreshBody, Denial> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(RefreshBody { refresh_token: None });
    }
    serde_json::from_slice(body).map_err(|_| refusal(400, "INVALID_BODY", "The body must be JSON like {\"refreshToken\": \"...\"}"))
}

pub(super) fn not_configured() -> Denial {
    refusal(404, "NOT_FOUND", "The registry declares no token_endpoint")
}

/// The peer, store and body rules of both routes: the store and the refresh token sent, if any.
pub(super) fn preflight<'s>(state: &'s TokenEndpointState, peer: &Peer, body: &Bytes) -> Result<(&'s TokenStore, Option<String>), Denial> {
    check_peer(peer, state.insecure)?;
    let store = state.store.as_deref().ok_or_else(|| store_unavailable("the control plane runs without --redis"))?;
    Ok((store, read_body(body)?.refresh_token))
}
