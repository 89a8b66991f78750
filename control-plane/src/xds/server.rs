//! The ADS gRPC service: the only place xDS does I/O. Each stream runs a pure state machine
//! ([`SotwStream`] or [`DeltaStream`], as the Envoy's bootstrap chose) against the latest
//! snapshot, until the Envoy leaves or the control plane stops: a stream is endless by
//! design, so without the stop flag the gRPC server's graceful shutdown would wait forever.

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

use envoy_types::pb::envoy::config::core::v3::Node;

use super::delta::DeltaStream;
use super::sotw::{SotwStream, StreamEvent};
use super::status::EnvoyRegistry;
use super::type_url;
use crate::shutdown::Stop;
use crate::snapshot::Snapshot;

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Clone)]
pub struct AdsServer {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    envoys: EnvoyRegistry,
    next_stream_id: Arc<AtomicU64>,
    stop: Stop,
}

impl AdsServer {
    pub fn new(snapshots: watch::Receiver<Arc<Snapshot>>, envoys: EnvoyRegistry, stop: Stop) -> Self {
        Self { snapshots, envoys, next_stream_id: Arc::new(AtomicU64::new(1)), stop }
    }
}

/// What the stream loop needs from a protocol state machine (state of the world or delta).
trait Protocol: Default + Send + 'static {
    type Request: Send + 'static;
    type Response: Send + std::fmt::Debug + 'static;
    const NAME: &'static str;
    fn node(request: &Self::Request) -> Option<&Node>;
    fn on_request(&mut self, request: &Self::Request, snapshot: &Snapshot) -> (Vec<Self::Response>, Vec<StreamEvent>);
    fn on_snapshot(&mut self, snapshot: &Snapshot) -> (Vec<Self::Response>, Vec<StreamEvent>);
    fn describe(response: &Self::Response) -> (&str, &str, &str, usize);
}

impl Protocol for SotwStream {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const NAME: &'static str = "sotw";
    fn node(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }
    fn on_request(&mut self, request: &DiscoveryRequest, snapshot: &Snapshot) -> (Vec<DiscoveryResponse>, Vec<StreamEvent>) {
        let step = SotwStream::on_request(self, request, snapshot);
        (step.responses, step.events)
    }
    fn on_snapshot(&mut self, snapshot: &Snapshot) -> (Vec<DiscoveryResponse>, Vec<StreamEvent>) {
        let step = SotwStream::on_snapshot(self, snapshot);
        (step.responses, step.events)
    }
    fn describe(r: &DiscoveryResponse) -> (&str, &str, &str, usize) {
        (&r.type_url, &r.version_info, &r.nonce, r.resources.len())
    }
}

impl Protocol for DeltaStream {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const NAME: &'static str = "delta";
    fn node(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }
    fn on_request(&mut self, request: &DeltaDiscoveryRequest, snapshot: &Snapshot) -> (Vec<DeltaDiscoveryResponse>, Vec<StreamEvent>) {
        let step = DeltaStream::on_request(self, request, snapshot);
        (step.responses, step.events)
    }
    fn on_snapshot(&mut self, snapshot: &Snapshot) -> (Vec<DeltaDiscoveryResponse>, Vec<StreamEvent>) {
        let step = DeltaStream::on_snapshot(self, snapshot);
        (step.responses, step.events)
    }
    fn describe(r: &DeltaDiscoveryResponse) -> (&str, &str, &str, usize) {
        (&r.type_url, &r.system_version_info, &r.nonce, r.resources.len() + r.removed_resources.len())
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
        Ok(Response::new(self.start::<SotwStream>(request.into_inner())))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Ok(Response::new(self.start::<DeltaStream>(request.into_inner())))
    }
}

impl AdsServer {
    fn start<P: Protocol>(&self, inbound: Streaming<P::Request>) -> ResponseStream<P::Response>
    where
        P::Request: prost::Message + Default,
    {
        let (tx, rx) = mpsc::channel(32);
        let stream_id = self.next_stream_id.fetch_add(1, Ordering::Relaxed);
        let stream = run_stream::<P>(stream_id, inbound, self.snapshots.clone(), self.envoys.clone(), tx);
        tokio::spawn(until_stopped(stream, self.stop.clone(), stream_id, self.envoys.clone()));
        Box::pin(ReceiverStream::new(rx))
    }
}

/// Runs a stream until it ends or the control plane stops. Ending the task drops the
/// response channel, which closes the stream with an OK status: Envoy keeps its config and
/// reconnects (to a replacement, once there is one).
/// Wrapping the whole stream (not one await in its loop) covers a send blocked on an Envoy
/// that stopped reading too.
async fn until_stopped(stream: impl std::future::Future<Output = ()>, stop: Stop, stream_id: u64, envoys: EnvoyRegistry) {
    tokio::select! {
        _ = stream => {}
        _ = stop.requested() => {
            tracing::info!(stream_id, "closing the ADS stream: the control plane is stopping");
            envoys.disconnect(stream_id);
        }
    }
}

async fn run_stream<P: Protocol>(
    stream_id: u64,
    mut inbound: Streaming<P::Request>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    envoys: EnvoyRegistry,
    tx: mpsc::Sender<Result<P::Response, Status>>,
) where
    P::Request: prost::Message + Default,
{
    let mut stream = P::default();
    let mut node_id = String::new();
    loop {
        let (responses, events) = tokio::select! {
            request = inbound.next() => match request {
                Some(Ok(request)) => {
                    if node_id.is_empty() {
                        if let Some(node) = P::node(&request) {
                            node_id = node.id.clone();
                            envoys.connect(stream_id, &node.id, &node.cluster, P::NAME);
                            tracing::info!(stream_id, node = %node.id, protocol = P::NAME, "envoy connected");
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
        for event in &events {
            log_event(stream_id, &node_id, event);
            envoys.record(stream_id, event);
        }
        for response in responses {
            let (type_url, version, nonce, resources) = P::describe(&response);
            tracing::debug!(
                stream_id, node = %node_id, r#type = type_url::short(type_url), %version, %nonce, resources, "sending"
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
