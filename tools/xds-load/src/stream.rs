//! One simulated Envoy: an ADS stream (state of the world) under its own client
//! certificate, subscribing to every type at once (wildcard) and ACKing every response
//! with its version and nonce, as Envoy does. A stream that cannot start (refused by the
//! new-stream cap, or no connection) is retried with Envoy's backoff; a stream that ends
//! is reported lost and, with `--hold-reconnects`, waits for the release before it retries.

use std::collections::BTreeSet;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use crate::backoff::{Backoff, Jitter};
use crate::report::{Event, EventKind};

pub struct SimulatedEnvoy {
    pub index: usize,
    pub node_id: String,
    /// The control plane's xDS address with this node's client certificate.
    pub endpoint: Endpoint,
    /// Type URLs subscribed to; the stream is synced once each has had a response ACKed.
    pub type_urls: Vec<String>,
    /// Lost streams wait for the release (a new value) before they reconnect.
    pub hold_reconnects: bool,
}

/// How one attempt at a stream ended.
enum Ended {
    /// No connection (the control plane is down or not listening yet).
    NotConnected,
    /// The server refused the stream before it started (UNAVAILABLE from the cap, or another status).
    Refused(tonic::Code),
    /// The stream had started and ended (the control plane stopped), synced or not.
    Lost,
}

impl SimulatedEnvoy {
    pub async fn run(self, events: mpsc::UnboundedSender<Event>, mut release: watch::Receiver<u64>) {
        let mut jitter = Jitter::new(self.index as u64 + 1);
        loop {
            let generation = *release.borrow_and_update();
            let mut retries = 0u32;
            loop {
                match self.one_stream(&events, retries).await {
                    Ended::Lost => break,
                    Ended::Refused(code) => self.report(&events, EventKind::Refused { code: format!("{code:?}") }),
                    Ended::NotConnected => self.report(&events, EventKind::NotConnected),
                }
                tokio::time::sleep(Backoff::ENVOY_XDS.delay(retries, jitter.next_word())).await;
                retries = retries.saturating_add(1);
            }
            self.report(&events, EventKind::Lost);
            if self.hold_reconnects {
                while *release.borrow_and_update() == generation {
                    if release.changed().await.is_err() {
                        return;
                    }
                }
            } else {
                // Envoy retries a closed stream after a backoff too.
                tokio::time::sleep(Backoff::ENVOY_XDS.delay(0, jitter.next_word())).await;
            }
        }
    }

    fn report(&self, events: &mpsc::UnboundedSender<Event>, kind: EventKind) {
        let _ = events.send(Event::now(self.index, kind));
    }

    async fn one_stream(&self, events: &mpsc::UnboundedSender<Event>, retries: u32) -> Ended {
        let Ok(channel) = self.endpoint.connect().await else { return Ended::NotConnected };
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let (requests, outbound) = mpsc::channel(self.type_urls.len() + 8);
        let node = Node { id: self.node_id.clone(), cluster: String::from("xds-load"), ..Default::default() };
        for (i, type_url) in self.type_urls.iter().enumerate() {
            let request = DiscoveryRequest { node: (i == 0).then(|| node.clone()), type_url: type_url.clone(), ..Default::default() };
            let _ = requests.send(request).await;
        }
        let mut inbound = match client.stream_aggregated_resources(ReceiverStream::new(outbound)).await {
            Ok(response) => response.into_inner(),
            Err(status) => return Ended::Refused(status.code()),
        };
        let mut acked: BTreeSet<String> = BTreeSet::new();
        let mut synced = false;
        let mut received = false;
        loop {
            match inbound.message().await {
                Ok(Some(response)) => {
                    received = true;
                    if requests.send(ack(&response)).await.is_err() {
                        return Ended::Lost;
                    }
                    acked.insert(response.type_url);
                    if !synced && self.type_urls.iter().all(|t| acked.contains(t)) {
                        synced = true;
                        self.report(events, EventKind::Synced { retries });
                    }
                }
                Ok(None) => return Ended::Lost,
                // Refused in the stream before anything came (e.g. the node's certificate).
                Err(status) if !received => return Ended::Refused(status.code()),
                Err(_) => return Ended::Lost,
            }
        }
    }
}

/// The ACK Envoy sends for a response it applied: its version and nonce, same subscription.
fn ack(response: &DiscoveryResponse) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: response.version_info.clone(),
        response_nonce: response.nonce.clone(),
        type_url: response.type_url.clone(),
        ..Default::default()
    }
}

/// How long a connection attempt may take before it counts as not connected.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
