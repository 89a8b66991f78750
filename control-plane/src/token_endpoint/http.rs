//! The token endpoint's HTTP side: POST /api/v1/auth/refresh and POST /api/v1/auth/logout,
//! reached only through Envoy (mutual TLS with an Envoy certificate unless `--insecure`).
//! Every refusal is the gateway's JSON error shape with the request's id.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use stagedoor_filter_core::decision::plain_request_id;
use stagedoor_filter_core::reply::Denial;

use super::claims::{RefreshClaims, Signer, TokenPair};
use super::rotate::{Presented, Rotation};
use super::preflight::{check_peer, not_configured, read_body, refusal, store_unavailable, TokenEndpointState};
use crate::registry::token_endpoint::{LOGOUT_PATH, REFRESH_PATH};
use crate::shutdown::Stop;
use crate::tls::listener::{Peer, PlainListener, TlsListener};

/// A refresh or logout body holds one token: far below this.
const MAX_BODY_BYTES: usize = 16 * 1024;

pub async fn serve(listen: SocketAddr, tls: Option<crate::tls::served::ServedTls>, state: TokenEndpointState, stop: Stop) -> std::io::Result<()> {
    let app = Router::new()
        .route(REFRESH_PATH, post(refresh))
        .route(LOGOUT_PATH, post(logout))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
        .into_make_service_with_connect_info::<Peer>();
    tracing::info!(%listen, tls = tls.is_some(), "token endpoint listening");
    match tls {
        Some(served) => axum::serve(TlsListener::bind(listen, served).await?, app).with_graceful_shutdown(stop.requested()).await,
        None => {
            let listener = PlainListener(tokio::net::TcpListener::bind(listen).await?);
            axum::serve(listener, app).with_graceful_shutdown(stop.requested()).await
        }
    }
}

/// What one call knows before it does anything: who sent it (for the security log) and
/// under which request id it answers.
struct Call {
    request_id: String,
    client: String,
}

impl Call {
    fn read(headers: &HeaderMap) -> Self {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Self {
            request_id: header("x-request-id").map(plain_request_id).unwrap_or_else(|| String::from("none")),
            // Set by Envoy from the connection it saw, replacing any client copy; an address
            // keeps to the request id's characters (digits, hex, '.', ':'), so it is log-safe.
            client: header("x-original-ip").map(plain_request_id).unwrap_or_else(|| String::from("unknown")),
        }
    }

    fn refuse(&self, denial: &Denial) -> Response {
        let now_ms = crate::clock::unix_ms() as i64;
        let status = StatusCode::from_u16(denial.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, denial.body(&self.request_id, now_ms)).into_response();
        let headers = response.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        for (name, value) in denial.headers() {
            headers.insert(name, HeaderValue::from_static(value));
        }
        response
    }

    fn answer(&self, body: &impl serde::Serialize) -> Response {
        let mut response = (StatusCode::OK, serde_json::to_string(body).unwrap_or_default()).into_response();
        let headers = response.headers_mut();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        // Tokens in a reply must never sit in a cache.
        headers.insert("cache-control", HeaderValue::from_static("no-store"));
        response
    }
}

async fn not_found(headers: HeaderMap) -> Response {
    Call::read(&headers).refuse(&refusal(404, "NOT_FOUND", "The token endpoint answers POST /api/v1/auth/refresh and /api/v1/auth/logout"))
}

async fn method_not_allowed(headers: HeaderMap) -> Response {
    Call::read(&headers).refuse(&refusal(405, "METHOD_NOT_ALLOWED", "Refresh and logout take POST"))
}

async fn refresh(State(state): State<TokenEndpointState>, ConnectInfo(peer): ConnectInfo<Peer>, headers: HeaderMap, body: Bytes) -> Response {
    let call = Call::read(&headers);
    match refresh_inner(&state, &peer, &call, &body).await {
        Ok(pair) => call.answer(&pair),
        Err(denial) => call.refuse(&denial),
    }
}

async fn refresh_inner(state: &TokenEndpointState, peer: &Peer, call: &Call, body: &Bytes) -> Result<TokenPair, Denial> {
    check_peer(peer, state.insecure)?;
    let view = state.publisher.view();
    let endpoint = view.registry.token_endpoint.as_ref().ok_or_else(not_configured)?;
    let store = state.store.as_ref().ok_or_else(|| store_unavailable("the control plane runs without --redis"))?;
    let token = read_body(body)?.refresh_token.ok_or_else(|| refusal(401, "TOKEN_MISSING", "A refreshToken is required"))?;
    let signer = Signer { registry: &view.registry, endpoint };
    let now_ms = crate::clock::unix_ms() as i64;
    let presented = signer.verify_refresh(&token, now_ms / 1000, false)?;
    let successor = crate::token::new_jti();
    let grace = std::time::Duration::from_secs(endpoint.grace_secs);
    let target = Presented { fid: &presented.fid, jti: &presented.jti, family_exp: presented.fexp };
    let rotation = store.rotate(&target, &successor, now_ms, grace).await.map_err(|e| {
        tracing::warn!(error = %e, "token endpoint: the rotation script failed");
        store_unavailable("redis did not answer")
    })?;
    match rotation {
        Rotation::Rotated { jti, at_ms } | Rotation::Grace { jti, at_ms } => {
            crate::metrics::bump(&crate::metrics::REFRESH_ROTATIONS);
            signer.successor_pair(&presented, &jti, at_ms).map_err(|_| refusal(500, "INTERNAL_ERROR", "The token could not be signed"))
        }
        Rotation::Reused => {
            family_revoked_here(state, &presented, call);
            Err(refusal(401, "REFRESH_TOKEN_REUSED", "This refresh token was already used; the session is revoked, log in again"))
        }
        Rotation::Revoked => Err(refusal(401, "TOKEN_REVOKED", "The session of this refresh token is revoked; log in again")),
    }
}

/// The script revoked the family in Redis and announced it; the list here takes it at once
/// (the announcement reaches the other control planes), and the event is logged and counted.
fn family_revoked_here(state: &TokenEndpointState, presented: &RefreshClaims, call: &Call) {
    let key = stagedoor_filter_core::revocation::family_key(&presented.fid);
    if let Ok(mut store) = state.revocations.lock() {
        store.learn(key, presented.fexp);
    }
    crate::metrics::bump(&crate::metrics::REFRESH_REUSE_DETECTED);
    // Never the token: its family, whose it is, and where the reuse came from.
    tracing::warn!(
        security_event = "refresh_token_reuse", tenant = %presented.tenant_id, family = %presented.fid,
        sub = %presented.sub, client = %call.client, request_id = %call.request_id,
        "refresh token reused: its family is revoked"
    );
}

async fn logout(State(state): State<TokenEndpointState>, ConnectInfo(peer): ConnectInfo<Peer>, headers: HeaderMap, body: Bytes) -> Response {
    let call = Call::read(&headers);
    match super::logout::logout(&state, &peer, &headers, &body).await {
        Ok(body) => call.answer(&body),
        Err(denial) => call.refuse(&denial),
    }
}

