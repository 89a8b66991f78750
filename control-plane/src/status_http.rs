//! The control plane's HTTP side: /status (JSON) for operators and the revocation feed for
//! Envoys, over mutual TLS (each route checks who is calling); /metrics and /healthz on a
//! separate plain address for scrapers.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::shared_publisher::SharedPublisher;
use crate::revocations::RevocationStore;
use crate::auth::{authenticate, authorize, Action, ApiTokens, Refusal};
use crate::shutdown::Stop;
use crate::tls::identity::PeerIdentity;
use crate::tls::listener::{Peer, PlainListener, TlsListener};
use crate::xds::status::EnvoyRegistry;

#[derive(Clone)]
pub struct AppState {
    pub publisher: SharedPublisher,
    pub envoys: EnvoyRegistry,
    pub revocations: Arc<std::sync::Mutex<RevocationStore>>,
    /// None when the control plane runs without Redis.
    pub discovery: Option<crate::discovery::redis_source::SharedStatus>,
    pub tokens: ApiTokens,
    /// With --redis: the registry in Redis as this replica follows it.
    pub registry_store: Option<crate::registry_store::follow::SharedStoreStatus>,
    /// `--insecure`: no certificates; /status and the feed are open.
    pub insecure: bool,
    /// What the certificate watchers refused, for /status.
    pub certificate_problems: crate::cert_status::CertificateProblems,
    /// The control plane's own credentials being served (None with --insecure).
    pub served_tls: Option<crate::tls::served::ServedTls>,
    /// The global rate limiter, when `--ratelimit` serves it: its counters in both.
    pub rate_limiter: Option<Arc<stagedoor_ratelimit::limiter::Limiter>>,
    /// RBAC shadow differences the filters reported, summed.
    pub shadow_counts: crate::shadow_report::ShadowCounts,
    /// The JWKS fetcher's report queue and status (crate::jwks).
    pub jwks: crate::jwks::JwksHandle,
}

/// Serves until `stop`, then finishes the requests in flight (the caller bounds the wait).
/// TLS unless `--insecure`.
pub async fn serve(listen: SocketAddr, tls: Option<crate::tls::served::ServedTls>, state: AppState, stop: Stop) -> std::io::Result<()> {
    let app = Router::new()
        .route("/status", get(status))
        .route("/ui", get(dashboard))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            crate::translate::names::REVOCATION_FEED_PATH,
            get({
                let stop = stop.clone();
                move |state, peer, query| revocation_feed(state, peer, query, stop)
            }),
        )
        .route(stagedoor_filter_core::shadow::SHADOW_REPORT_PATH, post(shadow_report))
        .route(crate::translate::names::KEY_REPORT_PATH, post(unknown_kids))
        .with_state(state)
        .into_make_service_with_connect_info::<Peer>();
    tracing::info!(%listen, tls = tls.is_some(), "status HTTP listening");
    match tls {
        Some(served) => {
            let listener = TlsListener::bind(listen, served).await?;
            axum::serve(listener, app).with_graceful_shutdown(stop.requested()).await
        }
        None => {
            let listener = PlainListener(tokio::net::TcpListener::bind(listen).await?);
            axum::serve(listener, app).with_graceful_shutdown(stop.requested()).await
        }
    }
}

/// /metrics and /healthz, plain: they carry no secret and scrapers rarely hold certificates.
pub async fn serve_metrics(listen: SocketAddr, state: AppState, stop: Stop) -> std::io::Result<()> {
    let app = Router::new().route("/metrics", get(metrics)).route("/healthz", get(|| async { "ok" })).with_state(state);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "metrics HTTP listening");
    axum::serve(listener, app).with_graceful_shutdown(stop.requested()).await
}

/// The refusal as the API would word it, with its HTTP status.
fn refused(refusal: Refusal) -> Response {
    let (code, message) = match refusal {
        Refusal::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, m),
        Refusal::PermissionDenied(m) => (StatusCode::FORBIDDEN, m),
    };
    (code, Json(json!({"error": message}))).into_response()
}

/// Only Envoys (their client certificate) poll the feed: it lists revoked tokens' keys.
fn feed_reader(peer: &Peer, insecure: bool) -> Result<(), Refusal> {
    match &peer.identity {
        _ if insecure => Ok(()),
        Some(PeerIdentity::Envoy { .. }) => Ok(()),
        Some(other) => Err(Refusal::PermissionDenied(format!("{other}: the revocation feed is for Envoys"))),
        None => Err(Refusal::Unauthenticated(String::from("the revocation feed needs an Envoy client certificate"))),
    }
}

async fn metrics(State(state): State<AppState>) -> String {
    use crate::metrics::{
        counter_value, write, CLIENT_CERTIFICATES_REFUSED, LOGOUTS, NACKS, REFRESH_REUSE_DETECTED, REFRESH_ROTATIONS, REGISTRY_EDITS_APPLIED,
        REGISTRY_EDITS_REJECTED, SNAPSHOTS_PUBLISHED, TASK_RESTARTS,
    };
    let (registry_version, snapshot_version, live) = {
        let p = state.publisher.view();
        (p.registry.version.clone(), p.snapshot.version.clone(), p.live.values().map(|s| s.len()).sum::<usize>())
    };
    let envoys = state.envoys.list();
    let (revoked, pending_write_back) = state.revocations.lock().map(|r| (r.len(), r.pending_write_back())).unwrap_or((0, 0));
    let mut out = String::new();
    let info = format!("{{registry=\"{registry_version}\",snapshot=\"{snapshot_version}\"}}");
    write(&mut out, "stagedoor_config_info", "gauge", "The registry and snapshot versions served.", &[(&info, 1.0)]);
    write(&mut out, "stagedoor_connected_envoys", "gauge", "Envoys with an open ADS stream.", &[("", envoys.len() as f64)]);
    let behind = envoys.iter().filter(|e| e.types.values().any(|t| t.acked_version.is_none())).count();
    write(&mut out, "stagedoor_envoys_without_full_ack", "gauge", "Envoys that have not ACKed every type yet.", &[("", behind as f64)]);
    write(&mut out, "stagedoor_nacks_total", "counter", "Responses Envoys rejected.", &[("", counter_value(&NACKS))]);
    write(&mut out, "stagedoor_snapshots_published_total", "counter", "Snapshots pushed.", &[("", counter_value(&SNAPSHOTS_PUBLISHED))]);
    write(&mut out, "stagedoor_registry_edits_applied_total", "counter", "Registry file edits applied.", &[("", counter_value(&REGISTRY_EDITS_APPLIED))]);
    write(&mut out, "stagedoor_registry_edits_rejected_total", "counter", "Registry file edits refused.", &[("", counter_value(&REGISTRY_EDITS_REJECTED))]);
    let help = "TLS handshakes refused for the client's certificate (not signed by the CA, expired, not for clients).";
    write(&mut out, "stagedoor_client_certificates_refused_total", "counter", help, &[("", counter_value(&CLIENT_CERTIFICATES_REFUSED))]);
    let help = "JWKS fetches that changed the keys Envoys get.";
    write(&mut out, "stagedoor_jwks_key_sets_published_total", "counter", help, &[("", counter_value(&crate::metrics::JWKS_KEY_SETS_PUBLISHED))]);
    let help = "Unknown kids of JWKS issuers reported by filters.";
    write(&mut out, "stagedoor_jwks_unknown_kid_reports_total", "counter", help, &[("", counter_value(&crate::metrics::JWKS_UNKNOWN_KID_REPORTS))]);
    let help = "ADS streams refused for the new-stream rate (--max-new-xds-streams-per-second).";
    write(&mut out, "stagedoor_xds_streams_refused_total", "counter", help, &[("", counter_value(&crate::metrics::XDS_STREAMS_REFUSED))]);
    let help = "gRPC-port connections that waited in the admission queue before their TLS handshake.";
    write(&mut out, "stagedoor_xds_connections_queued_total", "counter", help, &[("", counter_value(&crate::metrics::XDS_CONNECTIONS_QUEUED))]);
    let help = "Queued gRPC-port connections whose client left before their turn (never handshaken).";
    write(&mut out, "stagedoor_xds_connections_abandoned_total", "counter", help, &[("", counter_value(&crate::metrics::XDS_CONNECTIONS_ABANDONED))]);
    let help = "gRPC-port connections closed unhandshaken because the admission queue was full (the oldest waiting; --xds-accept-queue).";
    write(&mut out, "stagedoor_xds_connections_closed_queue_full_total", "counter", help, &[("", counter_value(&crate::metrics::XDS_CONNECTIONS_CLOSED_QUEUE_FULL))]);
    write(&mut out, "stagedoor_task_restarts_total", "counter", "Background tasks that died and were started again.", &[("", counter_value(&TASK_RESTARTS))]);
    write(&mut out, "stagedoor_refreshes_total", "counter", "Refreshes answered with a token pair.", &[("", counter_value(&REFRESH_ROTATIONS))]);
    let help = "Refresh tokens reused (an older family member, or the predecessor after the grace): each revoked its family.";
    write(&mut out, "stagedoor_refresh_reuse_detected_total", "counter", help, &[("", counter_value(&REFRESH_REUSE_DETECTED))]);
    write(&mut out, "stagedoor_logouts_total", "counter", "Logouts answered.", &[("", counter_value(&LOGOUTS))]);
    write(&mut out, "stagedoor_revoked_tokens", "gauge", "Entries on the revocation list.", &[("", revoked as f64)]);
    write(&mut out, "stagedoor_live_instances", "gauge", "Instances registered in Redis.", &[("", live as f64)]);
    let help = "Live instances the last snapshot left out for their service's limit (--max-instances-per-service).";
    write(&mut out, "stagedoor_live_instances_over_limit", "gauge", help, &[("", counter_value(&crate::metrics::LIVE_INSTANCES_OVER_LIMIT))]);
    if let Some(d) = state.discovery.as_ref().and_then(|d| d.lock().ok().map(|d| d.clone())) {
        write(&mut out, "stagedoor_redis_connected", "gauge", "1 while Redis is reachable.", &[("", if d.connected { 1.0 } else { 0.0 })]);
        write(&mut out, "stagedoor_redis_errors_total", "counter", "Redis connection losses.", &[("", d.errors as f64)]);
        let help = "Revocations Redis does not hold yet, written back when it is reachable.";
        write(&mut out, "stagedoor_revocations_pending_write_back", "gauge", help, &[("", pending_write_back as f64)]);
    }
    state.envoys.render_metrics(&mut out);
    if let Some(limiter) = &state.rate_limiter {
        out.push_str(&stagedoor_ratelimit::metrics::render(&limiter.metrics.snapshot()));
    }
    out
}

#[derive(serde::Deserialize)]
struct FeedQuery {
    #[serde(default)]
    since: u64,
    /// Hold the poll up to this long while nothing changes (crate::revocation_wait).
    #[serde(default)]
    wait_ms: u64,
}

/// What filters poll: the revocations since their cursor (or all, see RevocationStore),
/// once there are any or the poll's `wait_ms` has passed.
async fn revocation_feed(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    Query(query): Query<FeedQuery>,
    stop: Stop,
) -> Response {
    if let Err(refusal) = feed_reader(&peer, state.insecure) {
        tracing::warn!(peer = %peer.addr, ?refusal, "revocation feed refused");
        return refused(refusal);
    }
    crate::revocation_wait::until_news(&state.revocations, query.since, query.wait_ms, &stop).await;
    let update = state.revocations.lock().map(|mut store| store.feed(query.since)).ok();
    Json(serde_json::to_value(update).unwrap_or(Value::Null)).into_response()
}

/// A filter's RBAC shadow counts since its last report (Envoys only, as the feed).
async fn shadow_report(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refusal) = feed_reader(&peer, state.insecure) {
        tracing::warn!(peer = %peer.addr, ?refusal, "shadow report refused");
        return refused(refusal);
    }
    let added = serde_json::from_slice::<stagedoor_filter_core::shadow::ShadowReport>(&body)
        .map_err(|e| e.to_string())
        .and_then(|report| state.shadow_counts.add(&report));
    match added {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(reason) => {
            tracing::warn!(peer = %peer.addr, %reason, "shadow report refused");
            (StatusCode::BAD_REQUEST, reason).into_response()
        }
    }
}

/// At most this many kids per report are read (a filter sends 32 at most).
const MAX_REPORTED_KIDS: usize = 64;

#[derive(serde::Deserialize)]
struct UnknownKids {
    reports: Vec<UnknownKid>,
}

#[derive(serde::Deserialize)]
struct UnknownKid {
    issuer: String,
    kid: String,
}

/// Filters report kids of JWKS issuers that no key has: each is a hint for the fetcher,
/// which decides what it may cost (crate::jwks::limiter). Answered at once.
async fn unknown_kids(State(state): State<AppState>, ConnectInfo(peer): ConnectInfo<Peer>, body: axum::body::Bytes) -> Response {
    if let Err(refusal) = feed_reader(&peer, state.insecure) {
        tracing::warn!(peer = %peer.addr, ?refusal, "unknown-kid report refused");
        return refused(refusal);
    }
    let Ok(UnknownKids { reports }) = serde_json::from_slice::<UnknownKids>(&body) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "expected {\"reports\": [{\"issuer\": .., \"kid\": ..}]}"}))).into_response();
    };
    let mut queued = 0;
    for UnknownKid { issuer, kid } in reports.into_iter().take(MAX_REPORTED_KIDS) {
        crate::metrics::bump(&crate::metrics::JWKS_UNKNOWN_KID_REPORTS);
        queued += usize::from(state.jwks.report(issuer, kid));
    }
    (StatusCode::ACCEPTED, Json(json!({"queued": queued}))).into_response()
}

/// /status: the operator certificate or a `read` token, as the API's ListEnvoys.
async fn status(State(state): State<AppState>, ConnectInfo(peer): ConnectInfo<Peer>, headers: HeaderMap) -> Response {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    let caller = authenticate(peer.identity.as_ref(), authorization, &state.tokens, state.insecure);
    if let Err(refusal) = authorize(&caller, Action::Read) {
        return refused(refusal);
    }
    status_body(&state).await.into_response()
}

/// /ui: the read-only page, with the same authentication as /status.
async fn dashboard(State(state): State<AppState>, ConnectInfo(peer): ConnectInfo<Peer>, headers: HeaderMap) -> Response {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    let caller = authenticate(peer.identity.as_ref(), authorization, &state.tokens, state.insecure);
    if let Err(refusal) = authorize(&caller, Action::Read) {
        return refused(refusal);
    }
    let Json(status) = status_body(&state).await;
    axum::response::Html(crate::dashboard::render(&status)).into_response()
}

async fn status_body(state: &AppState) -> Json<Value> {
    let view = state.publisher.view();
    let snapshot = &view.snapshot;
    let nodes = state.envoys.nodes();
    let rejections = crate::xds::status::rejections_by_service(&nodes);
    let services: Vec<Value> = view
        .registry
        .services
        .values()
        .map(|s| {
            json!({
                "name": s.name,
                "prefixes": s.routes.iter().map(|r| r.prefix.clone()).collect::<Vec<_>>(),
                "instances": s.instances,
                "live_instances": view.live.get(&s.name).map(|l| l.iter().collect::<Vec<_>>()).unwrap_or_default(),
                // NACKs in force of this service's resources, until a later version is ACKed.
                "rejected": rejections.get(&s.name).cloned().unwrap_or_default(),
            })
        })
        .collect();
    let types: serde_json::Map<String, Value> = snapshot
        .types
        .iter()
        .map(|(url, t)| (crate::resources::type_url::short(url).to_owned(), json!(t.version)))
        .collect();
    let last_nack = nodes
        .iter()
        .flat_map(|e| e.types.iter().filter_map(move |(t, s)| s.last_nack.as_ref().map(|n| (e, t, n))))
        .max_by_key(|(_, _, n)| n.at_unix_ms)
        .map(|(e, t, n)| {
            json!({"node_id": e.node_id, "type": t, "version": n.version, "detail": n.detail, "at_unix_ms": n.at_unix_ms, "resources": n.resources})
        });
    let now = crate::xds::status::ledger_now_ms();
    let (open, closed): (Vec<_>, Vec<_>) = nodes.iter().partition(|n| n.is_connected());
    let envoys: Vec<Value> = open.iter().map(|n| crate::xds::status::node_json(n, now)).collect();
    let disconnected: Vec<Value> = closed.iter().map(|n| crate::xds::status::node_json(n, now)).collect();
    let (revoked, pending_write_back, (last_change_ms, last_poll_ms)) =
        state.revocations.lock().map(|r| (r.len(), r.pending_write_back(), r.activity())).unwrap_or((0, 0, (None, None)));
    let discovery = state.discovery.as_ref().and_then(|d| d.lock().ok().map(|d| d.clone()));
    let now_ms = crate::clock::unix_ms() as u64;
    // Filters poll every 250 ms: a last poll much older than that means no Envoy is
    // receiving revocations from this control plane.
    let revocation = json!({
        "enabled": view.options.control_plane_http.is_some(),
        "entries": revoked,
        "last_change_unix_ms": last_change_ms,
        "last_poll_unix_ms": last_poll_ms,
        "last_poll_age_ms": last_poll_ms.map(|t| now_ms.saturating_sub(t)),
        // Entries Redis does not hold yet (Redis away): written back when it returns.
        "pending_write_back": state.discovery.is_some().then_some(pending_write_back),
    });
    Json(json!({
        "certificates": certificates(state, &view.registry),
        "revocation": revocation,
        "registry_version": view.registry.version,
        "registry_store": state.registry_store.as_ref().map(|s| s.get()),
        "discovery": discovery,
        "revoked_tokens": revoked,
        "snapshot_version": snapshot.version,
        "type_versions": types,
        "services": services,
        "envoys": envoys,
        // Streams closed lately (DISCONNECTED), until their node reconnects.
        "disconnected_envoys": disconnected,
        "last_nack": last_nack,
        "rate_limit": state.rate_limiter.as_ref().map(|l| crate::ratelimit::status(&l.metrics.snapshot())),
        "rbac_shadow": state.shadow_counts.to_json(),
        "jwks": state.jwks.status(),
    }))
}

/// Problems the watchers found and the expiry of every certificate served.
fn certificates(state: &AppState, registry: &crate::registry::Registry) -> Value {
    use crate::cert_status::{expiries, registry_certificates, EXPIRY_WARNING_DAYS};
    let own = state.served_tls.as_ref().map(|s| s.current());
    let mut served: Vec<(String, &str)> = Vec::new();
    if let Some(own) = &own {
        served.push((String::from("control plane"), own.cert_pem.as_str()));
        served.push((String::from("control plane CA"), own.ca_pem.as_str()));
    }
    served.extend(registry_certificates(registry));
    json!({
        "problems": state.certificate_problems.list(),
        "expiring_within_days": EXPIRY_WARNING_DAYS,
        "served": expiries(served, crate::tls::load::unix_now()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_envoys_read_the_revocation_feed_unless_insecure() {
        let peer = |identity| Peer { addr: SocketAddr::from(([127, 0, 0, 1], 1)), identity };
        let envoy = peer(Some(PeerIdentity::Envoy { node_id: "n".into() }));
        let operator = peer(Some(PeerIdentity::Operator { name: "o".into() }));
        let nobody = peer(None);
        assert_eq!(feed_reader(&envoy, false), Ok(()));
        assert!(matches!(feed_reader(&operator, false), Err(Refusal::PermissionDenied(_))));
        assert!(matches!(feed_reader(&nobody, false), Err(Refusal::Unauthenticated(_))));
        assert_eq!(feed_reader(&nobody, true), Ok(()));
    }
}
