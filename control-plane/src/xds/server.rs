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
use super::sotw::SotwStream;
use super::step::{Step, StreamEvent};
use super::status::EnvoyRegistry;
use crate::token_bucket::TokenBucket;
use crate::resources::type_url;
use crate::shutdown::Stop;
use crate::snapshot::Snapshot;
use crate::tls::identity::{identity_of, PeerIdentity};

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Clone)]
pub struct AdsServer {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    envoys: EnvoyRegistry,
    next_stream_id: Arc<AtomicU64>,
    stop: Stop,
    /// Streams need a client certificate whose node id they claim (off with `--insecure`).
    require_certificate: bool,
    /// The cap on new streams per second (`--max-new-xds-streams-per-second`).
    stream_rate: Arc<std::sync::Mutex<TokenBucket>>,
}

impl AdsServer {
    pub fn new(snapshots: watch::Receiver<Arc<Snapshot>>, envoys: EnvoyRegistry, stop: Stop, require_certificate: bool) -> Self {
        Self {
            snapshots,
            envoys,
            next_stream_id: Arc::new(AtomicU64::new(1)),
            stop,
            require_certificate,
            stream_rate: Arc::new(std::sync::Mutex::new(TokenBucket::new(0))),
        }
    }

    /// At most `per_second` new streams a second (0: no cap).
    pub fn with_stream_rate(mut self, per_second: u32) -> Self {
        self.stream_rate = Arc::new(std::sync::Mutex::new(TokenBucket::new(per_second)));
        self
    }

    /// A stream over the cap is refused before anything is done for it.
    fn within_stream_rate(&self) -> Result<(), Status> {
        let now = u64::try_from(crate::clock::unix_ms()).unwrap_or(u64::MAX);
        // A poisoned lock admits: the cap protects throughput, it is no security boundary.
        let admitted = self.stream_rate.lock().map(|mut rate| rate.admit(now)).unwrap_or(true);
        if admitted {
            return Ok(());
        }
        crate::metrics::bump(&crate::metrics::XDS_STREAMS_REFUSED);
        tracing::debug!("ADS stream refused: over the new-stream rate");
        Err(Status::unavailable("too many new xDS streams this second; retry"))
    }

    /// Who may open this stream: a stream without a client certificate is refused before
    /// it starts (when certificates are required).
    fn admission<T>(&self, request: &Request<T>) -> Result<Admission, Status> {
        if !self.require_certificate {
            return Ok(Admission::Open);
        }
        let certificate = request.peer_certs().and_then(|chain| chain.first().map(|c| identity_of(c)));
        match certificate {
            Some(identity) => Ok(Admission::Certificate(identity)),
            None => {
                tracing::warn!("ADS stream refused: no client certificate");
                Err(Status::unauthenticated("xDS needs a client certificate signed by the control plane's CA"))
            }
        }
    }
}

/// What a stream was opened with.
#[derive(Debug, Clone)]
enum Admission {
    /// `--insecure`: no certificates.
    Open,
    Certificate(PeerIdentity),
}

/// Why a certified stream may not have the node id it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeRefusal {
    #[error("{0} is not an Envoy certificate")]
    NotAnEnvoy(String),
    #[error("the certificate is for node {certified:?}, the stream claims node {claimed:?}")]
    OtherNode { certified: String, claimed: String },
}

/// A node reads only its own config: the node id in the stream's first request must be
/// the one its certificate names.
pub fn node_may_connect(certificate: &PeerIdentity, node_id: &str) -> Result<(), NodeRefusal> {
    match certificate {
        PeerIdentity::Envoy { node_id: certified } if certified == node_id => Ok(()),
        PeerIdentity::Envoy { node_id: certified } => {
            Err(NodeRefusal::OtherNode { certified: certified.clone(), claimed: node_id.to_owned() })
        }
        other => Err(NodeRefusal::NotAnEnvoy(other.to_string())),
    }
}

/// What the stream loop needs from a protocol state machine (state of the world or delta).
trait Protocol: Default + Send + 'static {
    type Request: Send + 'static;
    type Response: Send + std::fmt::Debug + 'static;
    const NAME: &'static str;
    fn node(request: &Self::Request) -> Option<&Node>;
    fn on_request(&mut self, request: &Self::Request, snapshot: &Snapshot) -> Step<Self::Response>;
    fn on_snapshot(&mut self, snapshot: &Snapshot) -> Step<Self::Response>;
    fn describe(response: &Self::Response) -> (&str, &str, &str, usize);
}

impl Protocol for SotwStream {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const NAME: &'static str = "sotw";
    fn node(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }
    fn on_request(&mut self, request: &DiscoveryRequest, snapshot: &Snapshot) -> Step<DiscoveryResponse> {
        SotwStream::on_request(self, request, snapshot)
    }
    fn on_snapshot(&mut self, snapshot: &Snapshot) -> Step<DiscoveryResponse> {
        SotwStream::on_snapshot(self, snapshot)
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
    fn on_request(&mut self, request: &DeltaDiscoveryRequest, snapshot: &Snapshot) -> Step<DeltaDiscoveryResponse> {
        DeltaStream::on_request(self, request, snapshot)
    }
    fn on_snapshot(&mut self, snapshot: &Snapshot) -> Step<DeltaDiscoveryResponse> {
        DeltaStream::on_snapshot(self, snapshot)
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
        let admission = self.admission(&request)?;
        self.within_stream_rate()?;
        Ok(Response::new(self.start::<SotwStream>(request.into_inner(), admission)))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let admission = self.admission(&request)?;
        self.within_stream_rate()?;
        Ok(Response::new(self.start::<DeltaStream>(request.into_inner(), admission)))
    }
}

impl AdsServer {
    fn start<P: Protocol>(&self, inbound: Streaming<P::Request>, admission: Admission) -> ResponseStream<P::Response>
    where
        P::Request: prost::Message + Default,
    {
        let (tx, rx) = mpsc::channel(32);
        let stream_id = self.next_stream_id.fetch_add(1, Ordering::Relaxed);
        let stream = run_stream::<P>(stream_id, inbound, admission, self.snapshots.clone(), self.envoys.clone(), tx);
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
    admission: Admission,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    envoys: EnvoyRegistry,
    tx: mpsc::Sender<Result<P::Response, Status>>,
) where
    P::Request: prost::Message + Default,
{
    let mut stream = P::default();
    let mut node_id = String::new();
    let mut admitted = false;
    loop {
        let (Step { responses, events }, snapshot) = tokio::select! {
            request = inbound.next() => match request {
                Some(Ok(request)) => {
                    if !admitted {
                        // Before the first response: a refused node is sent nothing.
                        let claimed = P::node(&request).map(|n| n.id.as_str()).unwrap_or_default();
                        if let Admission::Certificate(certificate) = &admission {
                            if let Err(refusal) = node_may_connect(certificate, claimed) {
                                tracing::warn!(stream_id, node = %claimed, %refusal, "ADS stream refused");
                                let _ = tx.send(Err(Status::permission_denied(refusal.to_string()))).await;
                                return;
                            }
                        }
                        admitted = true;
                    }
                    if node_id.is_empty() {
                        if let Some(node) = P::node(&request) {
                            node_id = node.id.clone();
                            envoys.connect(stream_id, &node.id, &node.cluster, P::NAME);
                            tracing::info!(stream_id, node = %node.id, protocol = P::NAME, "envoy connected");
                        }
                    }
                    envoys.seen(stream_id);
                    let snapshot = snapshots.borrow().clone();
                    (stream.on_request(&request, &snapshot), snapshot)
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
                (stream.on_snapshot(&snapshot), snapshot)
            }
        };
        envoys.offered(stream_id, &snapshot);
        for event in &events {
            log_event(stream_id, &node_id, event);
            envoys.record(stream_id, event, &snapshot.origins);
        }
        for response in responses {
            let (type_url, version, nonce, resources) = P::describe(&response);
            tracing::debug!(
                stream_id, node = %node_id, r#type = type_url::short(type_url), %version, %nonce, resources, "sending"
            );
            envoys.sent(stream_id, type_url, version, nonce, resources);
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
        StreamEvent::Ack { type_url, version, .. } => {
            tracing::info!(stream_id, node = %node_id, r#type = type_url::short(type_url), %version, "ACK");
        }
        StreamEvent::Nack { type_url, version, nonce, detail, resources } => {
            tracing::warn!(
                stream_id, node = %node_id, r#type = type_url::short(type_url), %version, %nonce,
                %detail, ?resources, "NACK: Envoy rejected this version and keeps its last good config"
            );
        }
    }
}

#[cfg(test)]
mod admission_tests {
    use super::*;

    #[test]
    fn a_node_connects_only_under_its_own_certificate() {
        let envoy = |id: &str| PeerIdentity::Envoy { node_id: id.to_owned() };
        assert_eq!(node_may_connect(&envoy("gw-1"), "gw-1"), Ok(()));
        assert_eq!(
            node_may_connect(&envoy("gw-1"), "gw-2"),
            Err(NodeRefusal::OtherNode { certified: "gw-1".into(), claimed: "gw-2".into() })
        );
        assert!(matches!(node_may_connect(&envoy("gw-1"), ""), Err(NodeRefusal::OtherNode { .. })));
        assert!(matches!(node_may_connect(&envoy("gw-1"), "GW-1"), Err(NodeRefusal::OtherNode { .. })));
        let operator = PeerIdentity::Operator { name: "ops".into() };
        assert_eq!(node_may_connect(&operator, "ops"), Err(NodeRefusal::NotAnEnvoy("operator:ops".into())));
        let unknown = PeerIdentity::Unrecognised { subject: "CN=x".into() };
        assert!(matches!(node_may_connect(&unknown, "x"), Err(NodeRefusal::NotAnEnvoy(_))));
    }
}
