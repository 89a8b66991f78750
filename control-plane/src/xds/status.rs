//! Which Envoy runs which config: the [`Ledger`] behind a lock and the clock, shared by
//! every stream and the status endpoints (/status, /metrics, the API, CSDS), with the
//! counters Prometheus reads.

use std::sync::{Arc, Mutex};

use super::ledger::{names_resource, Ledger, Nack, NodeRecord, RejectedResource};
use super::metrics::XdsMetrics;
use super::step::StreamEvent;
use crate::resources::type_url;
use crate::translate::origins::{origin_of, Origins};

fn now_ms() -> u64 {
    u64::try_from(crate::clock::unix_ms()).unwrap_or(u64::MAX)
}

#[derive(Debug, Default)]
struct Tracked {
    ledger: Ledger,
    metrics: XdsMetrics,
}

/// Shared between every stream and the status endpoints.
#[derive(Debug, Clone, Default)]
pub struct EnvoyRegistry {
    inner: Arc<Mutex<Tracked>>,
}

impl EnvoyRegistry {
    fn with<T>(&self, f: impl FnOnce(&mut Tracked) -> T) -> Option<T> {
        self.inner.lock().ok().map(|mut tracked| f(&mut tracked))
    }

    pub fn connect(&self, stream_id: u64, node_id: &str, node_cluster: &str, protocol: &'static str) {
        self.with(|t| t.ledger.connect(stream_id, node_id, node_cluster, protocol, now_ms()));
    }

    pub fn disconnect(&self, stream_id: u64) {
        self.with(|t| t.ledger.disconnect(stream_id, now_ms()));
    }

    pub fn seen(&self, stream_id: u64) {
        self.with(|t| t.ledger.seen(stream_id, now_ms()));
    }

    pub fn offered(&self, stream_id: u64, snapshot_version: &str) {
        self.with(|t| t.ledger.offered(stream_id, snapshot_version));
    }

    pub fn sent(&self, stream_id: u64, type_url: &str, version: &str, nonce: &str, resources: usize) {
        self.with(|t| t.ledger.sent(stream_id, type_url::short(type_url), version, nonce, resources, now_ms()));
    }

    /// An ACK or NACK; a NACK's resources are traced to their registry entries in `origins`
    /// (those of the snapshot the stream runs against).
    pub fn record(&self, stream_id: u64, event: &StreamEvent, origins: &Origins) {
        let now = now_ms();
        self.with(|t| match event {
            StreamEvent::Ack { type_url, version, nonce } => {
                if let Some(acked) = t.ledger.ack(stream_id, type_url::short(type_url), version, nonce, now) {
                    t.metrics.observe_push_to_ack(&acked.type_name, acked.push_to_ack_ms);
                }
            }
            StreamEvent::Nack { type_url, version, nonce, detail, resources } => {
                crate::metrics::bump(&crate::metrics::NACKS);
                let known = type_url::known(type_url);
                let resources = resources
                    .iter()
                    .map(|name| RejectedResource {
                        name: name.clone(),
                        entry: known.and_then(|t| origin_of(origins, t, name)),
                        named_in_detail: names_resource(detail, name),
                    })
                    .collect();
                let nack = Nack { version: version.clone(), nonce: nonce.clone(), detail: detail.clone(), at_unix_ms: now, resources };
                let type_name = type_url::short(type_url);
                if let Some(node) = t.ledger.node(stream_id) {
                    t.metrics.count_nack(&node.node_id, type_name);
                }
                t.ledger.nack(stream_id, type_name, nack, now);
            }
        });
    }

    /// Open streams, then recently closed ones.
    pub fn nodes(&self) -> Vec<NodeRecord> {
        self.with(|t| t.ledger.nodes()).unwrap_or_default()
    }

    /// Open streams only.
    pub fn list(&self) -> Vec<NodeRecord> {
        self.nodes().into_iter().filter(NodeRecord::is_connected).collect()
    }

    /// The xDS metrics in Prometheus' text format.
    pub fn render_metrics(&self, out: &mut String) {
        self.with(|t| t.metrics.render(&t.ledger.nodes(), out));
    }
}

/// One node as /status shows it: the ledger's record with each type's state (and the age
/// of what is pending) worked out for `now_ms`.
pub fn node_json(node: &NodeRecord, now_ms: u64) -> serde_json::Value {
    let mut value = serde_json::to_value(node).unwrap_or_default();
    value["state"] = serde_json::json!(node.overall().as_str());
    for (type_name, record) in &node.types {
        let entry = &mut value["types"][type_name];
        entry["state"] = serde_json::json!(node.state_of(type_name).as_str());
        entry["pending_age_ms"] = serde_json::json!(record.pending_age_ms(now_ms));
    }
    value
}

/// The current time as the ledger counts it.
pub fn ledger_now_ms() -> u64 {
    now_ms()
}
