//! The CSDS gRPC service: authenticated and authorized as the stagedoor.v1 API's reads
//! (the operator certificate or a `read` token), then answered from the ledger.

use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_server::ClientStatusDiscoveryService;
use envoy_types::pb::envoy::service::status::v3::{ClientStatusRequest, ClientStatusResponse};
use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::status::EnvoyRegistry;
use crate::auth::{authenticate, authorize, Action, ApiTokens};
use crate::shutdown::Stop;
use crate::snapshot::Snapshot;
use crate::tls::identity::identity_of;

pub struct CsdsServer {
    pub envoys: EnvoyRegistry,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub tokens: ApiTokens,
    pub insecure: bool,
    pub stop: Stop,
}

impl CsdsServer {
    fn admit<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let certificate = request.peer_certs().and_then(|chain| chain.first().map(|c| identity_of(c)));
        let authorization = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        let caller = authenticate(certificate.as_ref(), authorization, &self.tokens, self.insecure);
        authorize(&caller, Action::Read).map_err(Status::from)
    }

    fn answer(&self, request: &ClientStatusRequest) -> ClientStatusResponse {
        let snapshot = self.snapshots.borrow().clone();
        super::csds::client_status(request, &self.envoys.nodes(), &snapshot)
    }
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<ClientStatusResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ClientStatusDiscoveryService for CsdsServer {
    type StreamClientStatusStream = StatusStream;

    async fn fetch_client_status(&self, request: Request<ClientStatusRequest>) -> Result<Response<ClientStatusResponse>, Status> {
        self.admit(&request)?;
        Ok(Response::new(self.answer(request.get_ref())))
    }

    /// Each request on the stream is answered once, from the ledger at that moment.
    async fn stream_client_status(
        &self,
        request: Request<Streaming<ClientStatusRequest>>,
    ) -> Result<Response<Self::StreamClientStatusStream>, Status> {
        self.admit(&request)?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let (envoys, snapshots, stop) = (self.envoys.clone(), self.snapshots.clone(), self.stop.clone());
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = inbound.next() => next,
                    _ = stop.clone().requested() => break,
                };
                let Some(Ok(request)) = next else { break };
                let snapshot = snapshots.borrow().clone();
                let answer = super::csds::client_status(&request, &envoys.nodes(), &snapshot);
                if tx.send(Ok(answer)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
