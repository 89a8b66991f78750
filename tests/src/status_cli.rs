//! Reading the control plane's view of its Envoys as an operator does: `stagedoor status`
//! (its table and `-o json`) and the standard CSDS service. Shared by the ledger, delta
//! ledger, dashboard and config_dump tests.

use std::process::Output;

use envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_client::ClientStatusDiscoveryServiceClient;
use envoy_types::pb::envoy::service::status::v3::{ClientStatusRequest, ClientStatusResponse};
use serde_json::Value;

use crate::Stack;

pub const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// `stagedoor status ARGS` against the stack's control plane.
pub fn status(stack: &Stack, args: &[&str]) -> Output {
    stack.cli().arg("status").args(args).output().expect("run stagedoor status")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `stagedoor status -o json`, which must succeed.
pub fn status_json(stack: &Stack) -> Value {
    let out = status(stack, &["-o", "json"]);
    assert!(out.status.success(), "status -o json: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status -o json prints JSON")
}

/// The entry of `node` in a /status or `status -o json` document (null if absent).
pub fn envoy<'a>(status: &'a Value, node: &str) -> &'a Value {
    status["envoys"].as_array().and_then(|e| e.iter().find(|e| e["node_id"] == node)).unwrap_or(&Value::Null)
}

/// CSDS's fetch, with the operator certificate named (or none).
pub fn csds(stack: &Stack, certificate: Option<&str>) -> Result<ClientStatusResponse, tonic::Status> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime").block_on(async {
        let channel = stack.grpc_channel(certificate).await;
        ClientStatusDiscoveryServiceClient::new(channel).fetch_client_status(ClientStatusRequest::default()).await.map(|r| r.into_inner())
    })
}

/// The CSDS entry of cluster `name` on `node`: (config status, client status, version, error details).
pub fn csds_cluster(response: &ClientStatusResponse, node: &str, name: &str) -> (i32, i32, String, String) {
    let config = response.config.iter().find(|c| c.node.as_ref().is_some_and(|n| n.id == node)).expect("the node in CSDS");
    let cluster = config.generic_xds_configs.iter().find(|g| g.type_url == CLUSTER_TYPE && g.name == name).expect("the cluster in CSDS");
    let details = cluster.error_state.as_ref().map(|e| e.details.clone()).unwrap_or_default();
    (cluster.config_status, cluster.client_status, cluster.version_info.clone(), details)
}
