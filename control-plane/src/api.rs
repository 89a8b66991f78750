//! The stagedoor.v1 gRPC API: a thin adapter over the publisher and the Envoy registry.

use std::path::PathBuf;
use std::sync::Arc;

use stagedoor_proto::v1::control_plane_server::ControlPlane;
use stagedoor_proto::v1::{
    ApplyRegistryRequest, ApplyRegistryResponse, EnvoyStatus, GetRegistryRequest, GetRegistryResponse,
    ListEnvoysRequest, ListEnvoysResponse, Nack, TypeStatus,
};
use tokio::sync::Mutex;
use tonic::{Request, Response, Status};

use crate::publish::Publisher;
use crate::registry::{Registry, RegistryFile};
use crate::xds::status::EnvoyRegistry;

pub struct ControlPlaneApi {
    pub publisher: Arc<Mutex<Publisher>>,
    pub envoys: EnvoyRegistry,
    /// Where an applied registry is written, so the file stays the source of truth.
    pub registry_file: PathBuf,
}

pub fn registry_yaml(registry: &Registry) -> String {
    let file = RegistryFile { services: registry.services.values().cloned().collect() };
    serde_yaml::to_string(&file).unwrap_or_default()
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
            crate::publish::build_snapshot(&registry, publisher.options(), Some(&publisher.current()))
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

fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("applying");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
