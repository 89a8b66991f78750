//! The stagedoor.v1 gRPC API: a thin adapter over the publisher and the Envoy registry.

use std::path::PathBuf;
use std::sync::Arc;

use stagedoor_proto::v1::control_plane_server::ControlPlane;
use stagedoor_proto::v1::{
    ApplyRegistryRequest, ApplyRegistryResponse, EnvoyStatus, GetRegistryRequest, GetRegistryResponse,
    DeregisterInstanceRequest, DeregisterInstanceResponse, ListEnvoysRequest, ListEnvoysResponse, Nack,
    Persistence, RegisterInstanceRequest, RegisterInstanceResponse, RevokeTokenRequest, RevokeTokenResponse, TypeStatus,
};
use tokio::sync::Mutex;
use tonic::{Request, Response, Status};

use crate::publish::Publisher;
use crate::revocations::{RevocationStore, DEFAULT_RETENTION_SECS};
use crate::registry::Registry;
use crate::xds::status::EnvoyRegistry;

pub struct ControlPlaneApi {
    pub publisher: Arc<Mutex<Publisher>>,
    pub envoys: EnvoyRegistry,
    /// Where an applied registry is written, so the file stays the source of truth.
    pub registry_file: PathBuf,
    pub revocations: Arc<std::sync::Mutex<RevocationStore>>,
    /// Where live instances are registered; None without --redis.
    pub redis_url: Option<String>,
    /// Wakes the revocation sync when a revocation could not be written to Redis.
    pub revocation_write_back: crate::discovery::revocation_sync::WriteBack,
}

/// Checks an instance the way the registry checks its static ones.
fn instance(service: &str, address: &str, port: u32) -> Result<(String, u16), Status> {
    let port = u16::try_from(port).ok().filter(|p| *p != 0).ok_or_else(|| Status::invalid_argument("port: must be 1-65535"))?;
    let ip: std::net::IpAddr = address.parse().map_err(|_| Status::invalid_argument("address: must be an IP address"))?;
    if !crate::registry::is_service_name(service) {
        return Err(Status::invalid_argument("service: must match [a-z][a-z0-9-]{0,39}"));
    }
    Ok((ip.to_string(), port))
}

pub fn registry_yaml(registry: &Registry) -> String {
    serde_yaml::to_string(&registry.to_file(true)).unwrap_or_default()
}

#[tonic::async_trait]
impl ControlPlane for ControlPlaneApi {
    async fn get_registry(&self, _: Request<GetRegistryRequest>) -> Result<Response<GetRegistryResponse>, Status> {
        let publisher = self.publisher.lock().await;
        Ok(Response::new(GetRegistryResponse {
            version: publisher.registry().version.clone(),
            yaml: registry_yaml(publisher.registry()),
            snapshot_version: publisher.current().version.clone(),
        }))
    }

    async fn apply_registry(
        &self,
        request: Request<ApplyRegistryRequest>,
    ) -> Result<Response<ApplyRegistryResponse>, Status> {
        let request = request.into_inner();
        let registry = Registry::parse("applied registry", &request.yaml)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let mut publisher = self.publisher.lock().await;
        let previous_version = publisher.registry().version.clone();
        let version = registry.version.clone();
        if request.dry_run {
            crate::publish::build_snapshot(&registry, publisher.live(), &[], publisher.options(), Some(&publisher.current()))
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            return Ok(Response::new(ApplyRegistryResponse {
                changed: previous_version != version,
                previous_version,
                version,
                snapshot_version: publisher.current().version.clone(),
            }));
        }
        let changed = publisher.apply(registry).map_err(|e| Status::invalid_argument(e.to_string()))?;
        write_atomically(&self.registry_file, &request.yaml)
            .map_err(|e| Status::internal(format!("applied, but writing {} failed: {e}", self.registry_file.display())))?;
        Ok(Response::new(ApplyRegistryResponse {
            previous_version,
            version,
            changed,
            snapshot_version: publisher.current().version.clone(),
        }))
    }

    async fn revoke_token(&self, request: Request<RevokeTokenRequest>) -> Result<Response<RevokeTokenResponse>, Status> {
        let now = (crate::xds::status::unix_ms() / 1000) as i64;
        let (key, expires_at) = revocation_target(request.get_ref(), now).map_err(Status::invalid_argument)?;
        let (cursor, generation) = self
            .revocations
            .lock()
            .map(|mut store| (store.revoke(key.clone(), expires_at), store.redis_generation()))
            .map_err(|_| Status::internal("revocation store unavailable"))?;
        // In force here already; Redis makes it outlive a restart and reach every control
        // plane. Success means stored there, or queued: kept in memory and written back by
        // the revocation sync when Redis returns; the reply says which.
        let (persistence, detail) = match &self.redis_url {
            None => (Persistence::MemoryOnly, String::new()),
            Some(url) => match crate::discovery::revocation_sync::store(url, &key, expires_at, now).await {
                Ok(()) => {
                    if let Ok(mut store) = self.revocations.lock() {
                        store.mark_stored(&key, expires_at, generation);
                    }
                    (Persistence::Stored, String::new())
                }
                Err(e) => {
                    self.revocation_write_back.wake();
                    (Persistence::Queued, format!("redis unavailable: {e}"))
                }
            },
        };
        tracing::info!(%key, expires_at, persistence = persistence.as_str_name(), %detail, "token revoked");
        Ok(Response::new(RevokeTokenResponse { key, cursor, persistence: persistence.into(), detail }))
    }

    async fn register_instance(
        &self,
        request: Request<RegisterInstanceRequest>,
    ) -> Result<Response<RegisterInstanceResponse>, Status> {
        let r = request.into_inner();
        let url = self.redis_url.as_deref().ok_or_else(|| Status::failed_precondition("the control plane runs without --redis"))?;
        let (address, port) = instance(&r.service, &r.address, r.port)?;
        let ttl = std::time::Duration::from_secs(u64::from(if r.ttl_seconds == 0 { 30 } else { r.ttl_seconds }));
        crate::discovery::redis_source::register(url, &r.service, &address, port, ttl)
            .await
            .map_err(|e| Status::unavailable(format!("redis: {e}")))?;
        Ok(Response::new(RegisterInstanceResponse {}))
    }

    async fn deregister_instance(
        &self,
        request: Request<DeregisterInstanceRequest>,
    ) -> Result<Response<DeregisterInstanceResponse>, Status> {
        let r = request.into_inner();
        let url = self.redis_url.as_deref().ok_or_else(|| Status::failed_precondition("the control plane runs without --redis"))?;
        let (address, port) = instance(&r.service, &r.address, r.port)?;
        crate::discovery::redis_source::deregister(url, &r.service, &address, port)
            .await
            .map_err(|e| Status::unavailable(format!("redis: {e}")))?;
        Ok(Response::new(DeregisterInstanceResponse {}))
    }

    async fn list_envoys(&self, _: Request<ListEnvoysRequest>) -> Result<Response<ListEnvoysResponse>, Status> {
        let snapshot_version = self.publisher.lock().await.current().version.clone();
        let envoys = self
            .envoys
            .list()
            .into_iter()
            .map(|e| EnvoyStatus {
                node_id: e.node_id,
                node_cluster: e.node_cluster,
                stream_id: e.stream_id,
                protocol: e.protocol.to_owned(),
                connected_at_unix_ms: u64::try_from(e.connected_at_unix_ms).unwrap_or(u64::MAX),
                types: e
                    .types
                    .into_iter()
                    .map(|(name, t)| TypeStatus {
                        r#type: name,
                        acked_version: t.acked_version.unwrap_or_default(),
                        last_nack: t.last_nack.map(|n| Nack {
                            version: n.version,
                            nonce: n.nonce,
                            detail: n.detail,
                            at_unix_ms: u64::try_from(n.at_unix_ms).unwrap_or(u64::MAX),
                        }),
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(ListEnvoysResponse { snapshot_version, envoys }))
    }
}

/// The revocation key and natural expiry of a token or jti, without verifying the token:
/// revoking a forged token is harmless, and the filter computes the same key.
pub fn revocation_target(request: &RevokeTokenRequest, now: i64) -> Result<(String, i64), String> {
    let default_expiry = if request.expires_at_unix > 0 { request.expires_at_unix } else { now + DEFAULT_RETENTION_SECS };
    if !request.jti.is_empty() {
        return Ok((request.jti.clone(), default_expiry));
    }
    let token = request.token.trim().trim_start_matches("Bearer ").trim();
    let payload = token.split('.').nth(1).ok_or("give a jti or a token (header.payload.signature)")?;
    use base64::Engine;
    let claims: serde_json::Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the token's payload is not base64url JSON")?;
    let jti = claims.get("jti").and_then(|j| j.as_str());
    let exp = claims.get("exp").and_then(|e| e.as_i64());
    let expires_at = if request.expires_at_unix > 0 { request.expires_at_unix } else { exp.map(|e| e + 60).unwrap_or(default_expiry) };
    Ok((stagedoor_filter_core::token::revocation_key(jti, token), expires_at))
}

fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("applying");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
