//! Incremental (delta) ADS, one stream at a time, as a pure state machine like [`super::sotw`]:
//! only resources that changed (or were asked for) are sent, removals are named.
//!
//! Rules kept here (xDS protocol, "Incremental xDS"):
//! - per type, the client subscribes and unsubscribes names; CDS and LDS with no names on
//!   the first request are wildcard subscriptions;
//! - a resource is sent when what this Envoy holds differs from the snapshot (tracked per
//!   resource by a hash of its bytes), and named in `removed_resources` when it is gone;
//! - a request with `error_detail` NACKs the response with that nonce: logged, recorded, and
//!   that content is not sent again until the snapshot changes it;
//! - as in state of the world, new listeners and routes wait until this Envoy ACKed the
//!   snapshot's clusters and holds endpoints for each of them.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource};

use super::sotw::StreamEvent;
use super::type_url;
use crate::snapshot::Snapshot;

#[derive(Debug, Default)]
struct TypeState {
    wildcard: bool,
    subscribed: BTreeSet<String>,
    /// What this Envoy holds: resource name -> hash of the bytes sent.
    held: BTreeMap<String, String>,
    /// Responses not yet ACKed: nonce -> type version they carried.
    pending: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
pub struct DeltaStream {
    types: BTreeMap<String, TypeState>,
    nonce_counter: u64,
}

/// Responses to send, in order, and events to record.
#[derive(Debug, Default)]
pub struct DeltaStep {
    pub responses: Vec<DeltaDiscoveryResponse>,
    pub events: Vec<StreamEvent>,
}

fn is_wildcard_type(type_url: &str) -> bool {
    type_url == type_url::CLUSTER || type_url == type_url::LISTENER
}

impl DeltaStream {
    pub fn on_request(&mut self, request: &DeltaDiscoveryRequest, snapshot: &Snapshot) -> DeltaStep {
        let mut step = DeltaStep::default();
        let state = self.types.entry(request.type_url.clone()).or_default();
        if !request.response_nonce.is_empty() {
            if let Some(version) = state.pending.remove(&request.response_nonce) {
                match &request.error_detail {
                    Some(error) => step.events.push(StreamEvent::Nack {
                        type_url: request.type_url.clone(),
                        version,
                        nonce: request.response_nonce.clone(),
                        detail: error.message.clone(),
                    }),
                    None => step.events.push(StreamEvent::Ack { type_url: request.type_url.clone(), version }),
                }
            }
        } else if request.resource_names_subscribe.is_empty() && is_wildcard_type(&request.type_url) {
            state.wildcard = true;
        }
        if request.response_nonce.is_empty() {
            // A (re)connecting Envoy says what it already holds; trust only the names, so
            // anything stale is re-sent.
            for name in request.initial_resource_versions.keys() {
                state.held.insert(name.clone(), String::new());
            }
        }
        for name in &request.resource_names_subscribe {
            if name == "*" {
                state.wildcard = true;
            } else {
                state.subscribed.insert(name.clone());
                // A fresh subscription gets the resource even if Envoy had it before.
                state.held.remove(name);
            }
        }
        for name in &request.resource_names_unsubscribe {
            if name == "*" {
                state.wildcard = false;
            }
            state.subscribed.remove(name);
            state.held.remove(name);
        }
        let type_url = request.type_url.clone();
        let gated = type_url == type_url::LISTENER || type_url == type_url::ROUTE;
        if !gated || self.clusters_ready(snapshot) {
            step.responses.extend(self.respond(&type_url, snapshot));
        }
        step.responses.extend(self.push_routes_if_ready(snapshot));
        step
    }

    pub fn on_snapshot(&mut self, snapshot: &Snapshot) -> DeltaStep {
        let mut step = DeltaStep::default();
        for type_url in [type_url::CLUSTER, type_url::ENDPOINT] {
            step.responses.extend(self.respond(type_url, snapshot));
        }
        step.responses.extend(self.push_routes_if_ready(snapshot));
        step
    }

    /// Whether this Envoy ACKed exactly the snapshot's clusters and the endpoints of every
    /// one of them (compared by content, so a new type version with equal content counts).
    fn clusters_ready(&self, snapshot: &Snapshot) -> bool {
        let settled = |t: &str| {
            let (Some(state), Some(typed)) = (self.types.get(t), snapshot.types.get(t)) else { return false };
            state.pending.is_empty() && typed.hashes.iter().all(|(name, hash)| state.held.get(name) == Some(hash))
        };
        settled(type_url::CLUSTER) && settled(type_url::ENDPOINT)
    }

    fn push_routes_if_ready(&mut self, snapshot: &Snapshot) -> Vec<DeltaDiscoveryResponse> {
        if !self.clusters_ready(snapshot) {
            return Vec::new();
        }
        [type_url::LISTENER, type_url::ROUTE].into_iter().filter_map(|t| self.respond(t, snapshot)).collect()
    }

    /// The changes this Envoy lacks for one type, if any.
    fn respond(&mut self, type_url: &str, snapshot: &Snapshot) -> Option<DeltaDiscoveryResponse> {
        let typed = snapshot.types.get(type_url)?;
        let state = self.types.get_mut(type_url)?;
        let wanted = |name: &String| state.wildcard || state.subscribed.contains(name);
        let mut resources = Vec::new();
        let mut now_held = Vec::new();
        for (name, any) in typed.resources.iter().filter(|(name, _)| wanted(name)) {
            let hash = typed.hashes.get(name).cloned().unwrap_or_default();
            if state.held.get(name) != Some(&hash) {
                resources.push(Resource {
                    name: name.clone(),
                    version: hash.clone(),
                    resource: Some(any.clone()),
                    ..Default::default()
                });
                now_held.push((name.clone(), hash));
            }
        }
        let removed: Vec<String> = state.held.keys().filter(|name| !typed.resources.contains_key(*name)).cloned().collect();
        if resources.is_empty() && removed.is_empty() {
            return None;
        }
        for name in &removed {
            state.held.remove(name);
        }
        state.held.extend(now_held);
        self.nonce_counter += 1;
        let nonce = self.nonce_counter.to_string();
        state.pending.insert(nonce.clone(), typed.version.clone());
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

#[cfg(test)]
#[path = "delta_tests.rs"]
mod tests;
