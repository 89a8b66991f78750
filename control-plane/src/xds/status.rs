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

    /// The stream has been offered `snapshot`.
    pub fn offered(&self, stream_id: u64, snapshot: &crate::snapshot::Snapshot) {
        let expected: Vec<&str> = snapshot
            .types
            .iter()
            .filter(|(url, typed)| **url != type_url::SECRET && !typed.resources.is_empty())
            .map(|(url, _)| type_url::short(url))
            .collect();
        self.with(|t| t.ledger.offered(stream_id, &snapshot.version, &expected));
    }

    pub fn sent(&self, stream_id: u64, type_url: &str, version: &str, nonce: &str, resources: usize) {
        self.with(|t| t.ledger.sent(stream_id, type_url::short(type_url), version, nonce, resources, now_ms()));
    }

    /// An ACK or NACK; a NACK's resources are traced to their registry entries in `origins`
    /// (those of the snapshot the stream runs against).
    pub fn record(&self, stream_id: u64, event: &StreamEvent, origins: &Origins) {
        let now = now_ms();
        self.with(|t| match event {
            StreamEvent::Ack { type_url, version, nonce, quarantined } => {
                if let Some(acked) = t.ledger.ack(stream_id, type_url::short(type_url), version, nonce, quarantined, now) {
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

/// A registry entry an Envoy refuses, as the service's status shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejection {
    pub node_id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub resource: String,
    pub field: String,
    pub version: String,
    pub detail: String,
}

/// Per service, the NACKs in force on open streams that refused one of its resources:
/// the service stays marked rejected until a later version of that type is ACKed.
pub fn rejections_by_service(nodes: &[NodeRecord]) -> std::collections::BTreeMap<String, Vec<Rejection>> {
    let mut by_service: std::collections::BTreeMap<String, Vec<Rejection>> = Default::default();
    for node in nodes.iter().filter(|n| n.is_connected()) {
        for (type_name, record) in &node.types {
            for (nack, resource) in record.in_force().flat_map(|nack| nack.refused().into_iter().map(move |r| (nack, r))) {
                let Some(entry) = &resource.entry else { continue };
                let Some(service) = &entry.service else { continue };
                by_service.entry(service.clone()).or_default().push(Rejection {
                    node_id: node.node_id.clone(),
                    type_name: type_name.clone(),
                    resource: resource.name.clone(),
                    field: entry.field.clone(),
                    version: nack.version.clone(),
                    detail: nack.detail.clone(),
                });
            }
        }
    }
    by_service
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::ledger::RegistryEntry;

    #[test]
    fn a_service_is_marked_rejected_while_a_nack_of_its_resource_is_in_force() {
        let mut ledger = Ledger::default();
        ledger.connect(1, "gw-1", "c", "sotw", 0);
        ledger.connect(2, "gw-2", "c", "sotw", 0);
        ledger.sent(1, "CDS", "v2", "1", 2, 0);
        let entry = RegistryEntry { service: Some("venue".into()), route: None, field: "traffic.load_balancing".into() };
        let nack = Nack {
            version: "v2".into(),
            nonce: "1".into(),
            detail: "cluster svc_venue refused".into(),
            at_unix_ms: 1,
            resources: vec![
                RejectedResource { name: "stagedoor_control_plane".into(), entry: None, named_in_detail: false },
                RejectedResource { name: "svc_venue".into(), entry: Some(entry), named_in_detail: true },
            ],
        };
        ledger.nack(1, "CDS", nack, 1);
        let marked = rejections_by_service(&ledger.nodes());
        assert_eq!(marked.keys().collect::<Vec<_>>(), ["venue"]);
        assert_eq!(marked["venue"][0].node_id, "gw-1");
        assert_eq!(marked["venue"][0].field, "traffic.load_balancing");
        ledger.sent(1, "CDS", "v3", "2", 2, 2);
        ledger.ack(1, "CDS", "v3", "2", &[], 3);
        assert!(rejections_by_service(&ledger.nodes()).is_empty(), "a later ACK clears the mark");
    }
}
