//! The stagedoor.v1 gRPC API: a thin adapter over the publisher and the Envoy registry.

use std::path::PathBuf;
use std::sync::Arc;

use stagedoor_proto::v1::control_plane_server::ControlPlane;
use stagedoor_proto::v1::{
    ApplyRegistryRequest, ApplyRegistryResponse, GetRegistryRequest, GetRegistryResponse, RegistryHistoryRequest,
    RegistryHistoryResponse, RegistryVersion, RollbackRegistryRequest,
    DeregisterInstanceRequest, DeregisterInstanceResponse, ListEnvoysRequest, ListEnvoysResponse, RbacShadowCount,
    Persistence, PurgeCacheRequest, PurgeCacheResponse, RegisterInstanceRequest, RegisterInstanceResponse, RevokeTokenRequest, RevokeTokenResponse,
};
use tonic::{Request, Response, Status};

use crate::shared_publisher::{off_the_workers, SharedPublisher};
use crate::revocations::{RevocationStore, DEFAULT_RETENTION_SECS};
use stagedoor_filter_core::token::MAX_TOKEN_BYTES;

use crate::registry::live::{check_instance, check_ttl};
use crate::registry::Registry;
use crate::xds::status::EnvoyRegistry;

pub struct ControlPlaneApi {
    pub publisher: SharedPublisher,
    pub envoys: EnvoyRegistry,
    /// Where an applied registry is written, so the file stays the source of truth.
    pub registry_file: PathBuf,
    pub revocations: Arc<std::sync::Mutex<RevocationStore>>,
    /// Where live instances are registered; None without --redis.
    pub redis_url: Option<String>,
    /// Wakes the revocation sync when a revocation could not be written to Redis.
    pub revocation_write_back: crate::discovery::revocation_sync::WriteBack,
    /// RBAC shadow differences the filters reported (`stagedoor status` shows them).
    pub shadow_counts: crate::shadow_report::ShadowCounts,
    /// With --redis: the registry lives there (crate::registry_store), not in the file.
    pub registry_store: Option<crate::registry_store::follow::RegistryStore>,
}

/// Who made a change, as the guard authenticated them (a request extension): kept with
/// each version of the registry in Redis.
#[derive(Debug, Clone)]
pub struct AppliedBy(pub String);

fn store_status(e: crate::registry_store::StoreError) -> Status {
    use crate::registry_store::StoreError;
    match e {
        StoreError::Stale { .. } => Status::failed_precondition(e.to_string()),
        StoreError::NotInHistory { .. } => Status::not_found(e.to_string()),
        StoreError::Redis(_) | StoreError::NotReplicated { .. } => Status::unavailable(e.to_string()),
        StoreError::Unreadable { .. } => Status::internal(e.to_string()),
    }
}

fn without_redis() -> Status {
    Status::failed_precondition("the control plane runs without --redis: the registry has no history")
}

fn invalid(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

pub fn registry_yaml(registry: &Registry) -> String {
    serde_yaml::to_string(&registry.to_file(true)).unwrap_or_default()
}

#[tonic::async_trait]
impl ControlPlane for ControlPlaneApi {
    async fn get_registry(&self, _: Request<GetRegistryRequest>) -> Result<Response<GetRegistryResponse>, Status> {
        let view = self.publisher.view();
        Ok(Response::new(GetRegistryResponse {
            version: view.registry.version.clone(),
            yaml: registry_yaml(&view.registry),
            snapshot_version: view.snapshot.version.clone(),
            store_version: self.registry_store.as_ref().map_or(0, |s| s.status.get().served_version),
        }))
    }

    async fn apply_registry(
        &self,
        request: Request<ApplyRegistryRequest>,
    ) -> Result<Response<ApplyRegistryResponse>, Status> {
        let applied_by = applied_by(&request);
        let request = request.into_inner();
        self.apply_yaml(&request.yaml, request.dry_run, request.base_version, &applied_by).await.map(Response::new)
    }

    async fn registry_history(&self, _: Request<RegistryHistoryRequest>) -> Result<Response<RegistryHistoryResponse>, Status> {
        let store = self.registry_store.as_ref().ok_or_else(without_redis)?;
        let mut conn = crate::registry_store::store::connect(&store.url).await.map_err(|e| Status::unavailable(format!("redis: {e}")))?;
        let history = crate::registry_store::store::history(&mut conn).await.map_err(store_status)?;
        let versions = history
            .into_iter()
            .map(|d| RegistryVersion { version: d.version, hash: d.hash, applied_by: d.applied_by, applied_at_unix_ms: d.applied_at_unix_ms })
            .collect();
        Ok(Response::new(RegistryHistoryResponse { versions }))
    }

    async fn rollback_registry(&self, request: Request<RollbackRegistryRequest>) -> Result<Response<ApplyRegistryResponse>, Status> {
        let applied_by = format!("{} (rollback to {})", applied_by(&request).0, request.get_ref().to_version);
        let store = self.registry_store.as_ref().ok_or_else(without_redis)?;
        let mut conn = crate::registry_store::store::connect(&store.url).await.map_err(|e| Status::unavailable(format!("redis: {e}")))?;
        let target = crate::registry_store::store::version(&mut conn, request.get_ref().to_version).await.map_err(store_status)?;
        self.apply_yaml(&target.yaml, false, request.get_ref().base_version, &AppliedBy(applied_by)).await.map(Response::new)
    }

    async fn revoke_token(&self, request: Request<RevokeTokenRequest>) -> Result<Response<RevokeTokenResponse>, Status> {
        let now = (crate::clock::unix_ms() / 1000) as i64;
        let (key, mut expires_at) = revocation_target(request.get_ref(), now).map_err(Status::invalid_argument)?;
        // A family's members are unknown here; none outlives the registry's family lifetime.
        if key.starts_with(stagedoor_filter_core::revocation::FAMILY_PREFIX) && request.get_ref().expires_at_unix <= 0 {
            let lifetime = self.publisher.view().registry.token_endpoint.as_ref().map_or(
                crate::registry::token_endpoint::DEFAULT_FAMILY_LIFETIME_SECS,
                |endpoint| endpoint.family_lifetime_secs,
            );
            expires_at = now + i64::try_from(lifetime).unwrap_or(i64::MAX / 4);
        }
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

    /// A purge is an entry of the revocation feed (stagedoor_filter_core::response_cache::Purge):
    /// every filter polling this control plane applies it at once, and through Redis every
    /// other control plane's filters too. It outlives any cached answer, then is collected.
    async fn purge_cache(&self, request: Request<PurgeCacheRequest>) -> Result<Response<PurgeCacheResponse>, Status> {
        let PurgeCacheRequest { route, tenant, surrogate_key } = request.into_inner();
        let purge = stagedoor_filter_core::response_cache::Purge::new(&route, &tenant, &surrogate_key).map_err(invalid)?;
        let key = purge.key();
        let now = (crate::clock::unix_ms() / 1000) as i64;
        use stagedoor_filter_core::response_cache::config::{MAX_STALE_SECS, MAX_TTL_SECS};
        // An answer lives at most its ttl and then its stale window.
        let expires_at = now + (MAX_TTL_SECS + MAX_STALE_SECS) as i64 + 60;
        let (cursor, generation) = self
            .revocations
            .lock()
            .map(|mut store| (store.revoke(key.clone(), expires_at), store.redis_generation()))
            .map_err(|_| Status::internal("revocation store unavailable"))?;
        if let Some(url) = &self.redis_url {
            match crate::discovery::revocation_sync::store(url, &key, expires_at, now).await {
                Ok(()) => {
                    if let Ok(mut store) = self.revocations.lock() {
                        store.mark_stored(&key, expires_at, generation);
                    }
                }
                Err(_) => self.revocation_write_back.wake(),
            }
        }
        tracing::info!(%key, cursor, "cache purged");
        Ok(Response::new(PurgeCacheResponse { key, cursor }))
    }

    async fn register_instance(
        &self,
        request: Request<RegisterInstanceRequest>,
    ) -> Result<Response<RegisterInstanceResponse>, Status> {
        let r = request.into_inner();
        let url = self.redis_url.as_deref().ok_or_else(|| Status::failed_precondition("the control plane runs without --redis"))?;
        let view = self.publisher.view();
        let live = check_instance(Some(&view.registry), &r.service, &r.address, r.port).map_err(invalid)?;
        let instance = crate::registry::InstanceSpec { address: live.address.clone(), port: live.port };
        view.options
            .limits
            .check_new_instance(&view.registry, &view.live, &live.service, &instance)
            .map_err(|e| Status::resource_exhausted(e.to_string()))?;
        let ttl = check_ttl(std::time::Duration::from_secs(u64::from(if r.ttl_seconds == 0 { 30 } else { r.ttl_seconds }))).map_err(invalid)?;
        crate::discovery::redis_source::register(url, &live.service, &live.address, live.port, ttl)
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
        // A removed service's instance may still be deregistered: no registry check.
        let live = check_instance(None, &r.service, &r.address, r.port).map_err(invalid)?;
        crate::discovery::redis_source::deregister(url, &live.service, &live.address, live.port)
            .await
            .map_err(|e| Status::unavailable(format!("redis: {e}")))?;
        Ok(Response::new(DeregisterInstanceResponse {}))
    }

    async fn list_envoys(&self, _: Request<ListEnvoysRequest>) -> Result<Response<ListEnvoysResponse>, Status> {
        let snapshot_version = self.publisher.view().snapshot.version.clone();
        let now = crate::xds::status::ledger_now_ms();
        let envoys = self.envoys.nodes().iter().map(|node| crate::xds::ledger_proto::envoy_status(node, now)).collect();
        let rbac_shadow = self.shadow_counts.counts().into_iter().map(|(label, c)| RbacShadowCount { label, denied: c.denied, allowed: c.allowed }).collect();
        Ok(Response::new(ListEnvoysResponse { snapshot_version, envoys, rbac_shadow }))
    }
}

fn applied_by<T>(request: &Request<T>) -> AppliedBy {
    request.extensions().get::<AppliedBy>().cloned().unwrap_or_else(|| AppliedBy(String::from("unknown")))
}

impl ControlPlaneApi {
    /// ApplyRegistry and RollbackRegistry: validated as ever; then, with --redis, written to
    /// Redis with compare-and-set on `base` (every replica follows it there), else to the file.
    async fn apply_yaml(&self, yaml: &str, dry_run: bool, base: Option<u64>, applied_by: &AppliedBy) -> Result<ApplyRegistryResponse, Status> {
        // Validation and translation are CPU work: kept off the async workers.
        let registry = off_the_workers(|| Registry::parse("applied registry", yaml)).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let version = registry.version.clone();
        let view = self.publisher.view();
        let served_store_version = self.registry_store.as_ref().map_or(0, |s| s.status.get().served_version);
        if dry_run || self.registry_store.is_some() {
            // With Redis, the snapshot check comes before the write every replica follows.
            off_the_workers(|| crate::publish::build_snapshot(&registry, &view.live, &[], &view.options, Some(&view.snapshot)))
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        if dry_run {
            return Ok(ApplyRegistryResponse {
                changed: view.registry.version != version,
                previous_version: view.registry.version.clone(),
                version,
                snapshot_version: view.snapshot.version.clone(),
                store_version: served_store_version,
            });
        }
        let mut store_version = 0;
        if let Some(store) = &self.registry_store {
            let base = base.unwrap_or(served_store_version);
            tracing::info!(base, served = served_store_version, "registry change: compare-and-set in redis");
            let mut conn = crate::registry_store::store::connect(&store.url).await.map_err(|e| Status::unavailable(format!("redis: {e}")))?;
            let written = crate::registry_store::store::write(&mut conn, base, &version, yaml, &applied_by.0, store.keep)
                .await
                .map_err(store_status)?;
            store_version = match written {
                crate::registry_store::Written::New(v) | crate::registry_store::Written::Unchanged(v) => v,
            };
            tracing::info!(version = store_version, registry = %version, by = %applied_by.0, "registry written to redis");
        }
        let (previous_version, applied) = self
            .publisher
            .update(|p| (p.registry().version.clone(), p.apply(registry).map(|changed| (changed, p.current().version.clone()))))
            .await;
        let (changed, snapshot_version) = applied.map_err(|e| Status::invalid_argument(e.to_string()))?;
        // This replica's follower may have served the new version from the announcement
        // first: what changed is judged against what was served before this call.
        let (previous_version, changed) = match &self.registry_store {
            Some(_) => (view.registry.version.clone(), changed || view.registry.version != version),
            None => (previous_version, changed),
        };
        // Served here at once; the follower then finds this version already served.
        if let Some(store) = &self.registry_store {
            store.status.update(|s| {
                s.served_version = store_version;
                s.latest_version = s.latest_version.max(store_version);
                s.error = None;
            });
        }
        // With Redis the file mirrors what is served (crate::watch), without it it is the source.
        write_atomically(&self.registry_file, yaml)
            .map_err(|e| Status::internal(format!("applied, but writing {} failed: {e}", self.registry_file.display())))?;
        Ok(ApplyRegistryResponse { previous_version, version, changed, snapshot_version, store_version })
    }
}

/// The revocation key and natural expiry of a token or jti, without verifying the token:
/// revoking a forged token is harmless, and the filter computes the same key.
pub fn revocation_target(request: &RevokeTokenRequest, now: i64) -> Result<(String, i64), String> {
    let default_expiry = if request.expires_at_unix > 0 { request.expires_at_unix } else { now + DEFAULT_RETENTION_SECS };
    if !request.jti.is_empty() {
        check_jti(&request.jti)?;
        return Ok((request.jti.clone(), default_expiry));
    }
    let token = request.token.trim().trim_start_matches("Bearer ").trim();
    if token.len() > MAX_TOKEN_BYTES {
        // The filter refuses such a token before looking it up: nothing to revoke.
        return Err(format!("token: {} bytes; the gateway refuses any token over {MAX_TOKEN_BYTES} bytes", token.len()));
    }
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

/// The longest bare jti accepted: far beyond a UUID (36) or this gateway's own (16).
pub const MAX_JTI_BYTES: usize = 256;

/// A bare jti is printable ASCII without spaces, at most [`MAX_JTI_BYTES`]: it is a key in
/// Redis, in the revocation feed and in log lines, where a newline or a megabyte would do
/// harm. (A token's own jti is taken as the filter reads it, bounded by the token's size.)
fn check_jti(jti: &str) -> Result<(), String> {
    if jti.len() > MAX_JTI_BYTES {
        return Err(format!("jti: {} bytes; at most {MAX_JTI_BYTES}", jti.len()));
    }
    if let Some(bad) = jti.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!("jti: {bad:?} is not allowed (printable ASCII without spaces only)"));
    }
    Ok(())
}

fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("applying");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jti(jti: &str) -> Result<(String, i64), String> {
        revocation_target(&RevokeTokenRequest { jti: jti.into(), ..Default::default() }, 1_000)
    }

    #[test]
    fn a_bare_jti_is_bounded_and_printable() {
        assert_eq!(jti("revoke-me"), Ok(("revoke-me".into(), 1_000 + DEFAULT_RETENTION_SECS)));
        assert!(jti(&"j".repeat(MAX_JTI_BYTES)).is_ok());
        assert_eq!(jti(&"j".repeat(100_000)), Err("jti: 100000 bytes; at most 256".into()));
        assert_eq!(jti("a\nb"), Err("jti: '\\n' is not allowed (printable ASCII without spaces only)".into()));
        assert!(jti("a b").is_err() && jti("é").is_err());
    }

    #[test]
    fn a_token_longer_than_the_gateway_reads_is_refused() {
        let token = format!("a.{}.c", "b".repeat(MAX_TOKEN_BYTES));
        let e = revocation_target(&RevokeTokenRequest { token, ..Default::default() }, 1_000).unwrap_err();
        assert!(e.starts_with("token: 8196 bytes"), "{e}");
    }
}
