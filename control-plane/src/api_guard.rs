//! The stagedoor.v1 API as callers reach it: every call is authenticated and authorized
//! (crate::auth) before [`ControlPlaneApi`] sees it, and every change is audited with its
//! outcome. api.rs stays the plain adapter over the publisher.

use std::sync::Arc;

use serde_json::json;
use stagedoor_proto::v1::control_plane_server::ControlPlane;
use stagedoor_proto::v1::{
    ApplyRegistryRequest, ApplyRegistryResponse, DeregisterInstanceRequest, DeregisterInstanceResponse, GetRegistryRequest,
    GetRegistryResponse, ListEnvoysRequest, ListEnvoysResponse, RegisterInstanceRequest, RegisterInstanceResponse,
    PurgeCacheRequest, PurgeCacheResponse, RegistryHistoryRequest, RegistryHistoryResponse, RevokeTokenRequest,
    RevokeTokenResponse, RollbackRegistryRequest,
};
use tonic::{Request, Response, Status};

use crate::api::ControlPlaneApi;
use crate::auth::{audit, authenticate, authorize, Action, ApiTokens, Caller};
use crate::shared_publisher::SharedPublisher;
use crate::tls::identity::identity_of;

pub struct GuardedApi {
    pub api: ControlPlaneApi,
    pub publisher: SharedPublisher,
    pub tokens: ApiTokens,
    /// `--insecure`: no certificates exist; without a tokens file everyone is trusted.
    pub insecure: bool,
}

impl GuardedApi {
    fn caller<T>(&self, request: &Request<T>) -> Caller {
        let certificate = request.peer_certs().and_then(|chain| chain.first().map(|c| identity_of(c)));
        let authorization = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        authenticate(certificate.as_ref(), authorization, &self.tokens, self.insecure)
    }

    /// The caller, if it may do `action`; a refused change is audited too.
    fn admit<T>(&self, request: &Request<T>, action: Action<'_>, audited: Option<(&str, serde_json::Value)>) -> Result<Caller, Status> {
        let caller = self.caller(request);
        if let Err(refusal) = authorize(&caller, action) {
            let status = Status::from(refusal);
            if let Some((name, what)) = audited {
                audit::record(&caller.to_string(), name, what, Err(&status));
            }
            return Err(status);
        }
        Ok(caller)
    }

    async fn registry(&self) -> Arc<crate::registry::Registry> {
        self.publisher.view().registry.clone()
    }
}

fn outcome<T>(result: &Result<T, Status>) -> Result<(), &Status> {
    result.as_ref().map(|_| ())
}

#[tonic::async_trait]
impl ControlPlane for GuardedApi {
    async fn get_registry(&self, request: Request<GetRegistryRequest>) -> Result<Response<GetRegistryResponse>, Status> {
        self.admit(&request, Action::Read, None)?;
        self.api.get_registry(request).await
    }

    async fn list_envoys(&self, request: Request<ListEnvoysRequest>) -> Result<Response<ListEnvoysResponse>, Status> {
        self.admit(&request, Action::Read, None)?;
        self.api.list_envoys(request).await
    }

    async fn registry_history(&self, request: Request<RegistryHistoryRequest>) -> Result<Response<RegistryHistoryResponse>, Status> {
        self.admit(&request, Action::Read, None)?;
        self.api.registry_history(request).await
    }

    async fn rollback_registry(&self, mut request: Request<RollbackRegistryRequest>) -> Result<Response<ApplyRegistryResponse>, Status> {
        let to = request.get_ref().to_version;
        let caller = self.admit(&request, Action::Apply, Some(("rollback", json!({"to_version": to}))))?;
        request.extensions_mut().insert(crate::api::AppliedBy(caller.to_string()));
        let before = self.registry().await;
        let result = self.api.rollback_registry(request).await;
        let what = json!({
            "to_version": to,
            "registry_before": before.version,
            "registry_after": self.registry().await.version,
            "store_version": result.as_ref().ok().map(|r| r.get_ref().store_version),
        });
        audit::record(&caller.to_string(), "rollback", what, outcome(&result));
        result
    }

    async fn apply_registry(&self, mut request: Request<ApplyRegistryRequest>) -> Result<Response<ApplyRegistryResponse>, Status> {
        let dry_run = request.get_ref().dry_run;
        let caller = self.admit(&request, Action::Apply, Some(("apply", json!({"dry_run": dry_run}))))?;
        request.extensions_mut().insert(crate::api::AppliedBy(caller.to_string()));
        let before = self.registry().await;
        let result = self.api.apply_registry(request).await;
        let after = self.registry().await;
        let services: Vec<String> = crate::diff::diff(&before, &after)
            .into_iter()
            .map(|change| match change {
                crate::diff::Change::Added(name) => format!("+{name}"),
                crate::diff::Change::Removed(name) => format!("-{name}"),
                crate::diff::Change::Changed(name, _) => format!("~{name}"),
            })
            .collect();
        let what = json!({
            "dry_run": dry_run,
            "registry_before": before.version,
            "registry_after": after.version,
            "services": services,
        });
        audit::record(&caller.to_string(), "apply", what, outcome(&result));
        result
    }

    async fn revoke_token(&self, request: Request<RevokeTokenRequest>) -> Result<Response<RevokeTokenResponse>, Status> {
        let caller = self.admit(&request, Action::RevokeToken, Some(("revoke", serde_json::Value::Null)))?;
        let result = self.api.revoke_token(request).await;
        // The key (a jti or a token's hash), never the token itself.
        let what = json!({"key": result.as_ref().ok().map(|r| r.get_ref().key.clone())});
        audit::record(&caller.to_string(), "revoke", what, outcome(&result));
        result
    }

    /// Who may revoke tokens may purge the cache: both are entries of the one feed.
    async fn purge_cache(&self, request: Request<PurgeCacheRequest>) -> Result<Response<PurgeCacheResponse>, Status> {
        let r = request.get_ref();
        let what = json!({"route": r.route, "tenant": r.tenant, "surrogate_key": r.surrogate_key});
        let caller = self.admit(&request, Action::RevokeToken, Some(("purge", what.clone())))?;
        let result = self.api.purge_cache(request).await;
        audit::record(&caller.to_string(), "purge", what, outcome(&result));
        result
    }

    async fn register_instance(&self, request: Request<RegisterInstanceRequest>) -> Result<Response<RegisterInstanceResponse>, Status> {
        let r = request.get_ref();
        let what = json!({"service": r.service, "address": r.address, "port": r.port, "ttl_seconds": r.ttl_seconds});
        let service = r.service.clone();
        let caller = self.admit(&request, Action::Register { service: &service }, Some(("register", what.clone())))?;
        let result = self.api.register_instance(request).await;
        audit::record(&caller.to_string(), "register", what, outcome(&result));
        result
    }

    async fn deregister_instance(
        &self,
        request: Request<DeregisterInstanceRequest>,
    ) -> Result<Response<DeregisterInstanceResponse>, Status> {
        let r = request.get_ref();
        let what = json!({"service": r.service, "address": r.address, "port": r.port});
        let service = r.service.clone();
        let caller = self.admit(&request, Action::Register { service: &service }, Some(("deregister", what.clone())))?;
        let result = self.api.deregister_instance(request).await;
        audit::record(&caller.to_string(), "deregister", what, outcome(&result));
        result
    }
}
