//! The ADS gRPC service: the only place xDS does I/O. Each stream runs the pure
//! [`SotwStream`] state machine against the latest snapshot.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::sotw::{SotwStream, StreamEvent};
use super::status::EnvoyRegistry;
use super::type_url;
use crate::snapshot::Snapshot;

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Clone)]
pub struct AdsServer {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    envoys: EnvoyRegistry,
    next_stream_id: Arc<AtomicU64>,
}

impl AdsServer {
    pub fn new(snapshots: watch::Receiver<Arc<Snapshot>>, envoys: EnvoyRegistry) -> Self {
        Self { snapshots, envoys, next_stream_id: Arc::new(AtomicU64::new(1)) }
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(32);
        let stream_id = self.next_stream_id.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(run_sotw_stream(stream_id, inbound, self.snapshots.clone(), self.envoys.clone(), tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented("incremental xDS is not served yet; use api_type GRPC"))
    }
}

async fn run_sotw_stream(
    stream_id: u64,
    mut inbound: Streaming<DiscoveryRequest>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    envoys: EnvoyRegistry,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
) {
    let mut stream = SotwStream::default();
    let mut node_id = String::new();
    loop {
        let step = tokio::select! {
            request = inbound.next() => match request {
                Some(Ok(request)) => {
                    if node_id.is_empty() {
                        if let Some(node) = &request.node {
                            node_id = node.id.clone();
                            envoys.connect(stream_id, &node.id, &node.cluster, "sotw");
                            tracing::info!(stream_id, node = %node.id, "envoy connected");
                        }
                    }
                    let snapshot = snapshots.borrow().clone();
                    stream.on_request(&request, &snapshot)
                }
                Some(Err(status)) => {
                    tracing::info!(stream_id, node = %node_id, %status, "stream ended with error");
                    break;
                }
                None => break,
            },
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break; // the control plane is shutting down
                }
                let snapshot = snapshots.borrow_and_update().clone();
                stream.on_snapshot(&snapshot)
            }
        };
        for event in &step.events {
            log_event(stream_id, &node_id, event);
            envoys.record(stream_id, event);
        }
        for response in step.responses {
            tracing::debug!(
                stream_id, node = %node_id, r#type = type_url::short(&response.type_url),
                version = %response.version_info, nonce = %response.nonce,
                resources = response.resources.len(), "sending"
            );
            if tx.send(Ok(response)).await.is_err() {
                envoys.disconnect(stream_id);
                return;
            }
        }
    }
    tracing::info!(stream_id, node = %node_id, "envoy disconnected");
    envoys.disconnect(stream_id);
}

fn log_event(stream_id: u64, node_id: &str, event: &StreamEvent) {
    match event {
        StreamEvent::Ack { type_url, version } => {
            tracing::info!(stream_id, node = %node_id, r#type = type_url::short(type_url), %version, "ACK");
        }
        StreamEvent::Nack { type_url, version, nonce, detail } => {
            tracing::warn!(
                stream_id, node = %node_id, r#type = type_url::short(type_url), %version, %nonce,
                %detail, "NACK: Envoy rejected this version and keeps its last good config"
            );
        }
    }
}
