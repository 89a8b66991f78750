//! What the SotW and delta state machines share: the step one input produces, the order
//! types go out in, and the loop that sends every type with something new for a stream.

use crate::resources::type_url;
use crate::snapshot::Snapshot;

/// The types a new snapshot sends at once, in this order. Secrets are not gated: Envoy asks
/// for one only when a cluster or listener it received names it, and that cluster or
/// listener warms until the secret comes; a rotated secret goes out first.
pub(super) const UNGATED_TYPES: [&str; 3] = [type_url::SECRET, type_url::CLUSTER, type_url::ENDPOINT];

/// The types that wait for clusters, in the order they go out.
pub(super) const GATED_TYPES: [&str; 3] = [type_url::EXTENSION_CONFIG, type_url::LISTENER, type_url::ROUTE];

/// What happened on the stream that the operator should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// `quarantined`: the resources of this type still quarantined on the stream after
    /// this ACK (quarantine.rs): their NACK stays in force.
    Ack { type_url: String, version: String, nonce: String, quarantined: Vec<String> },
    /// `resources`: the names the rejected response carried.
    Nack { type_url: String, version: String, nonce: String, detail: String, resources: Vec<String> },
}

/// Responses to send, in order, and events to record: what one request or snapshot does to
/// a stream. `R` is the protocol's response (`DiscoveryResponse` or the delta one).
#[derive(Debug)]
pub struct Step<R> {
    pub responses: Vec<R>,
    pub events: Vec<StreamEvent>,
}

impl<R> Default for Step<R> {
    fn default() -> Self {
        Self { responses: Vec::new(), events: Vec::new() }
    }
}

/// The per-protocol half of sending: one type's response if this stream lacks something of
/// it, and whether the gated types may go.
pub(super) trait SendsTypes {
    type Response;
    /// A response for `type_url` if this stream subscribed to it and lacks some of the
    /// snapshot's content; None otherwise (never a repeat of what was sent).
    fn respond_if_changed(&mut self, type_url: &str, snapshot: &Snapshot) -> Option<Self::Response>;
    /// Whether this Envoy holds the snapshot's clusters and the endpoints of each of them.
    fn clusters_ready(&self, snapshot: &Snapshot) -> bool;
}

/// Every one of `types`, in order, that has something new for this stream.
pub(super) fn send_changed<S: SendsTypes>(stream: &mut S, types: &[&str], snapshot: &Snapshot) -> Vec<S::Response> {
    types.iter().filter_map(|type_url| stream.respond_if_changed(type_url, snapshot)).collect()
}

/// The gated types (ECDS, LDS, RDS) with something new, once the clusters are ready.
pub(super) fn send_gated_if_ready<S: SendsTypes>(stream: &mut S, snapshot: &Snapshot) -> Vec<S::Response> {
    if !stream.clusters_ready(snapshot) {
        return Vec::new();
    }
    send_changed(stream, &GATED_TYPES, snapshot)
}

/// A new snapshot: the ungated types that changed for this stream, then the gated ones if
/// its clusters are ready (now, or on a later ACK).
pub(super) fn on_snapshot<S: SendsTypes>(stream: &mut S, snapshot: &Snapshot) -> Step<S::Response> {
    let mut responses = send_changed(stream, &UNGATED_TYPES, snapshot);
    responses.extend(send_gated_if_ready(stream, snapshot));
    Step { responses, events: Vec::new() }
}
