//! Incremental (delta) ADS, one stream at a time, as a pure state machine like [`super::sotw`]:
//! only resources that changed (or were asked for) are sent, removals are named.
//!
//! Rules kept here (xDS protocol, "Incremental xDS"):
//! - per type, the client subscribes and unsubscribes names; CDS and LDS with no names on
//!   the first request are wildcard subscriptions;
//! - a resource is sent when what was last sent to this Envoy differs from the snapshot
//!   (tracked per resource by a hash of its bytes), and named in `removed_resources` when it
//!   is gone;
//! - a request with `error_detail` NACKs the response with that nonce: logged, recorded, and
//!   the resources it refused are quarantined (quarantine.rs): not sent again to this Envoy
//!   until the snapshot changes them. The others of that response go again at once (Envoy
//!   applied them, but an ACK is what says so), so one refused service does not hold back
//!   the rest of its type;
//! - as in state of the world, new filter configs (ECDS), listeners and routes wait, in that
//!   order, until this Envoy ACKed the snapshot's clusters and the endpoints of each of them. What was sent is not what is
//!   held: only an ACK moves a response's resources into `acked`, so a NACKed cluster keeps
//!   the routes that would point at it back until it is quarantined; a quarantined resource
//!   counts as settled (Envoy keeps what it had of it, if anything, until the registry
//!   changes it), so the rest of the config is not held back by it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource};
use imbl::ordmap::DiffItem;

use super::quarantine::{refused, Quarantine};
use super::step::{SendsTypes, Step, StreamEvent, GATED_TYPES};
use crate::resources::type_url;
use crate::snapshot::{Snapshot, TypedResources};

#[derive(Debug, Default)]
struct TypeState {
    wildcard: bool,
    subscribed: BTreeSet<String>,
    /// What was sent to this Envoy: resource name -> hash of its bytes. A resource is not
    /// sent again while its hash is unchanged, a NACKed one included.
    sent: BTreeMap<String, String>,
    /// What this Envoy ACKed: resource name -> hash. Listeners and routes are gated on it.
    acked: BTreeMap<String, String>,
    /// Resources this Envoy refused, at the content it refused.
    quarantine: Quarantine,
    /// Responses not yet ACKed or NACKed, by nonce.
    pending: BTreeMap<String, PendingResponse>,
    /// The snapshot's typed map `sent` is exactly the wanted part of (after a response with
    /// nothing quarantined; forgotten by anything that changes `sent` or the subscription
    /// otherwise): the next response is then a diff of the two maps, which skips what they
    /// share, not a walk of every resource of the type (10,000 clusters, 10,000
    /// assignments, at each snapshot).
    synced: Option<Arc<TypedResources>>,
}

/// What one response carried, applied to `acked` when Envoy ACKs it.
#[derive(Debug)]
struct PendingResponse {
    version: String,
    resources: Vec<(String, String)>,
    removed: Vec<String>,
}

impl TypeState {
    /// Drops what is known of one resource, so it is sent afresh if wanted (unless it is
    /// quarantined at the snapshot's content: a fresh subscription does not make Envoy
    /// accept what it refused).
    fn forget(&mut self, name: &str) {
        self.synced = None;
        self.sent.remove(name);
        self.acked.remove(name);
    }

    /// The NACK of `response`: what it refused is quarantined, the rest counts as not
    /// sent, so it goes again in the reply (whose ACK settles it).
    fn nacked(&mut self, response: &PendingResponse, detail: &str) {
        let carried = response.resources.iter().map(|(name, hash)| (name.as_str(), hash.as_str()));
        let refused = refused(detail, carried);
        self.synced = None;
        for (name, _) in &response.resources {
            if !refused.iter().any(|(r, _)| r == name) {
                self.sent.remove(name);
            }
        }
        self.quarantine.add(refused);
    }

    /// The ACK of `response`: its resources are held, and no longer quarantined.
    fn acked(&mut self, response: PendingResponse) {
        for name in &response.removed {
            self.acked.remove(name);
            self.quarantine.lift(name);
        }
        for (name, hash) in &response.resources {
            self.quarantine.acked(name, hash);
        }
        self.acked.extend(response.resources);
    }
}

#[derive(Debug, Default)]
pub struct DeltaStream {
    types: BTreeMap<String, TypeState>,
    nonce_counter: u64,
}

/// What one request or snapshot does to a delta stream.
pub type DeltaStep = Step<DeltaDiscoveryResponse>;

fn is_wildcard_type(type_url: &str) -> bool {
    type_url == type_url::CLUSTER || type_url == type_url::LISTENER
}

impl DeltaStream {
    pub fn on_request(&mut self, request: &DeltaDiscoveryRequest, snapshot: &Snapshot) -> DeltaStep {
        let mut step = DeltaStep::default();
        let state = self.types.entry(request.type_url.clone()).or_default();
        if !request.response_nonce.is_empty() {
            if let Some(response) = state.pending.remove(&request.response_nonce) {
                match &request.error_detail {
                    Some(error) => {
                        let names = response.resources.iter().map(|(name, _)| name.clone()).collect();
                        state.nacked(&response, &error.message);
                        step.events.push(StreamEvent::Nack {
                            type_url: request.type_url.clone(),
                            version: response.version,
                            nonce: request.response_nonce.clone(),
                            detail: error.message.clone(),
                            resources: names,
                        });
                    }
                    None => {
                        let version = response.version.clone();
                        state.acked(response);
                        step.events.push(StreamEvent::Ack {
                            type_url: request.type_url.clone(),
                            version,
                            nonce: request.response_nonce.clone(),
                            quarantined: state.quarantine.names(),
                        });
                    }
                }
            }
        } else if request.resource_names_subscribe.is_empty() && is_wildcard_type(&request.type_url) {
            state.wildcard = true;
        }
        if request.response_nonce.is_empty() || !request.resource_names_subscribe.is_empty() || !request.resource_names_unsubscribe.is_empty() {
            state.synced = None;
        }
        if request.response_nonce.is_empty() {
            // A (re)connecting Envoy says what it already holds; trust only the names, so
            // anything stale is re-sent (and counts as held once that is ACKed).
            for name in request.initial_resource_versions.keys() {
                state.sent.insert(name.clone(), String::new());
            }
        }
        for name in &request.resource_names_subscribe {
            if name == "*" {
                state.wildcard = true;
            } else {
                state.subscribed.insert(name.clone());
                // A fresh subscription gets the resource even if Envoy had it before.
                state.forget(name);
            }
        }
        for name in &request.resource_names_unsubscribe {
            if name == "*" {
                state.wildcard = false;
            }
            state.subscribed.remove(name);
            state.forget(name);
            state.quarantine.lift(name);
        }
        let type_url = request.type_url.clone();
        let gated = GATED_TYPES.contains(&type_url.as_str());
        if !gated || self.clusters_ready(snapshot) {
            step.responses.extend(self.respond(&type_url, snapshot));
        }
        if type_url == type_url::CLUSTER {
            // A cluster sent again after a NACK needs its endpoints too (rewarm_endpoints).
            step.responses.extend(self.respond(type_url::ENDPOINT, snapshot));
        }
        step.responses.extend(super::step::send_gated_if_ready(self, snapshot));
        step
    }

    /// A new snapshot: what changed of the ungated types, then of the gated ones once the
    /// clusters are ready.
    pub fn on_snapshot(&mut self, snapshot: &Snapshot) -> DeltaStep {
        super::step::on_snapshot(self, snapshot)
    }

    /// The changes this Envoy lacks for one type, if any, but what it refused.
    fn respond(&mut self, type_url: &str, snapshot: &Snapshot) -> Option<DeltaDiscoveryResponse> {
        let typed = snapshot.types.get(type_url)?;
        let state = self.types.get_mut(type_url)?;
        let synced = state.synced.clone().filter(|_| state.quarantine.is_empty());
        let was_synced = state.quarantine.is_empty().then(|| typed.clone());
        if synced.as_ref().is_some_and(|s| Arc::ptr_eq(s, typed)) {
            return None;
        }
        let wanted = |name: &String| state.wildcard || state.subscribed.contains(name);
        let mut resources = Vec::new();
        let mut now_sent = Vec::new();
        let mut removed = Vec::new();
        let mut send = |name: &String, hash: &String| {
            if state.sent.get(name) != Some(hash) && !state.quarantine.holds(name, hash) {
                if let Some(any) = typed.resources.get(name) {
                    resources.push(Resource { name: name.clone(), version: hash.clone(), resource: Some((**any).clone()), ..Default::default() });
                    now_sent.push((name.clone(), hash.clone()));
                }
            }
        };
        match &synced {
            // Only what changed since the map `sent` is exactly the wanted part of.
            Some(before) => {
                for item in before.hashes.diff(&typed.hashes) {
                    match item {
                        DiffItem::Add(name, hash) | DiffItem::Update { new: (name, hash), .. } => {
                            if wanted(name) {
                                send(name, hash);
                            }
                        }
                        DiffItem::Remove(name, _) => {
                            if state.sent.contains_key(name) {
                                removed.push(name.clone());
                            }
                        }
                    }
                }
            }
            None => {
                for (name, hash) in typed.hashes.iter().filter(|(name, _)| wanted(name)) {
                    send(name, hash);
                }
                removed = state.sent.keys().filter(|name| !typed.resources.contains_key(*name)).cloned().collect();
            }
        }
        state.synced = was_synced;
        if resources.is_empty() && removed.is_empty() {
            return None;
        }
        for name in &removed {
            state.sent.remove(name);
        }
        state.sent.extend(now_sent.iter().cloned());
        let clusters_sent: Vec<String> =
            if type_url == type_url::CLUSTER { now_sent.iter().map(|(name, _)| name.clone()).collect() } else { Vec::new() };
        self.nonce_counter += 1;
        let nonce = self.nonce_counter.to_string();
        let pending = PendingResponse { version: typed.version.clone(), resources: now_sent, removed: removed.clone() };
        state.pending.insert(nonce.clone(), pending);
        self.rewarm_endpoints(&clusters_sent);
        Some(DeltaDiscoveryResponse {
            system_version_info: typed.version.clone(),
            resources,
            type_url: type_url.to_owned(),
            removed_resources: removed,
            nonce,
            ..Default::default()
        })
    }
}

impl DeltaStream {
    /// A changed cluster warms until it gets its endpoints, and a delta Envoy does not ask
    /// again for endpoints it holds: it waits out its initial fetch timeout (15 s) instead.
    /// So the endpoints of every cluster sent count as not sent (nor held), and go right
    /// after it (EDS follows CDS in every pass, step.rs); the routes wait for their ACK.
    fn rewarm_endpoints(&mut self, clusters: &[String]) {
        let Some(endpoints) = self.types.get_mut(type_url::ENDPOINT) else { return };
        if !clusters.is_empty() {
            endpoints.synced = None;
        }
        for name in clusters {
            endpoints.sent.remove(name);
            endpoints.acked.remove(name);
        }
    }
}

impl SendsTypes for DeltaStream {
    type Response = DeltaDiscoveryResponse;

    /// `respond` already sends only what changed.
    fn respond_if_changed(&mut self, type_url: &str, snapshot: &Snapshot) -> Option<DeltaDiscoveryResponse> {
        self.respond(type_url, snapshot)
    }

    /// Whether this Envoy ACKed exactly the snapshot's clusters and the endpoints of every
    /// one of them (compared by content, so a new type version with equal content counts),
    /// or refused them: a quarantined resource is what it will be until the registry
    /// changes it.
    fn clusters_ready(&self, snapshot: &Snapshot) -> bool {
        let settled = |t: &str| {
            let (Some(state), Some(typed)) = (self.types.get(t), snapshot.types.get(t)) else { return false };
            state.pending.is_empty()
                && typed.hashes.iter().all(|(name, hash)| state.acked.get(name) == Some(hash) || state.quarantine.holds(name, hash))
        };
        settled(type_url::CLUSTER) && settled(type_url::ENDPOINT)
    }
}

#[cfg(test)]
#[path = "delta_tests.rs"]
mod tests;
