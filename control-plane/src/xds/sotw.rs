//! State-of-the-world ADS, one stream at a time, as a pure state machine: requests and
//! snapshots go in, responses and ACK/NACK events come out. No I/O, so every protocol rule
//! is unit-tested.
//!
//! Rules kept here (xDS protocol, "ACK/NACK and resource type instance version"):
//! - a request whose nonce is not the last one sent for its type is stale and ignored;
//! - a request with `error_detail` is a NACK of the version last sent; that version is never
//!   sent again to this stream (it would be NACKed again). The resources it refused are
//!   quarantined (quarantine.rs; candidates: those whose content differs from what this
//!   Envoy last ACKed): every later response of the type carries them at the content this
//!   Envoy last ACKed (from that response's typed map, shared, not copied) or leaves them
//!   out if it never had one, with the snapshot's content of everything else, until the
//!   registry changes them. Such a response goes at once when the NACK quarantined
//!   something new, so one refused service does not hold back the rest of its type;
//! - a request with the current nonce and no error is an ACK; if it names other resources
//!   (EDS/RDS subscriptions change as clusters and listeners come and go), they are sent;
//! - types go out in SDS, CDS, EDS, ECDS, LDS, RDS order, and a new ECDS/LDS/RDS waits until this
//!   Envoy has ACKed the snapshot's clusters and the endpoints of every one of them (make
//!   before break: a route never points at a cluster still warming, nor the filter's feed at
//!   a missing cluster). Removed services keep their clusters a few seconds after their
//!   routes go (see `publish.rs`). ECDS goes before LDS so a changed listener finds the
//!   filter config it names; on a first connection Envoy asks for ECDS only once it has the
//!   listener (it subscribes by the filter's name), and that listener warms until ECDS
//!   arrives.
//! - an EDS response carries only the assignments whose content this Envoy was not sent yet
//!   (a new subscription's, a changed one's, a re-created cluster's): in SotW, Envoy reads a
//!   missing cluster or listener as removed but keeps a ClusterLoadAssignment a response
//!   leaves out (an EDS cluster given no assignment changes nothing: Envoy's
//!   `EdsClusterImpl::onConfigUpdate`; tests/tests/discovery.rs shows it), so an instance
//!   change at 10,000 services sends one assignment, not 10,000; and once an Envoy holds
//!   every assignment of a snapshot, what it lacks of the next is a diff of the two
//!   snapshots' hash maps (`TypeState::synced`), not a look at 10,000 names.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use imbl::ordmap::DiffItem;

use super::quarantine::{refused, Quarantine};
use super::step::{SendsTypes, Step, StreamEvent};
use crate::resources::type_url;
use crate::snapshot::{Snapshot, TypedResources};

/// A quarantined resource as one response carried it: its last good content and hash, or
/// None when this Envoy never held one (it was left out).
type Kept = BTreeMap<String, Option<(Arc<Any>, String)>>;

/// The content of one type a response was made of: the snapshot's typed map (shared) and
/// the quarantined resources it carried instead.
#[derive(Debug, Default, Clone)]
struct Content {
    typed: Option<Arc<TypedResources>>,
    kept: Kept,
}

impl Content {
    /// The content and hash this response carried of `name`, if any.
    fn of(&self, name: &str) -> Option<(Arc<Any>, String)> {
        if let Some(kept) = self.kept.get(name) {
            return kept.clone();
        }
        let typed = self.typed.as_ref()?;
        Some((typed.resources.get(name)?.clone(), typed.hashes.get(name)?.clone()))
    }
}

#[derive(Debug, Default)]
struct TypeState {
    /// Names asked for; empty means every resource of the type (wildcard).
    names: BTreeSet<String>,
    /// The version on the wire: the snapshot's, with a suffix when resources were kept.
    sent_version: Option<String>,
    sent_nonce: Option<String>,
    acked_version: Option<String>,
    /// The snapshot type version the last response was made from, and the last ACKed one.
    sent_from: Option<String>,
    acked_from: Option<String>,
    /// The resource names the last response carried (what a NACK rejected).
    sent_names: BTreeSet<String>,
    /// What this Envoy was sent and still subscribes to: name -> content hash. For EDS,
    /// which endpoints Envoy has (responses carry only what differs from it); for CDS, which
    /// clusters a response changes (Envoy re-creates those, and they warm). A quarantined
    /// resource is held at the last good content it was sent.
    held: BTreeMap<String, String>,
    /// What the last response carried, and what the last ACKed one did (this Envoy's last
    /// good content of the type).
    sent: Content,
    acked: Content,
    quarantine: Quarantine,
    /// The snapshot's typed map `held` is complete for: every wanted resource of it held at
    /// its hash and nothing else (after an EDS response of every resource this Envoy
    /// lacked, with nothing quarantined; forgotten on a NACK or a new subscription). The
    /// next EDS response then finds what this Envoy lacks by a diff of the two maps, which
    /// skips what they share, not a walk of every name: an instance change at 10,000
    /// services looks at one.
    synced: Option<Arc<TypedResources>>,
    /// The names the last request listed, as listed: an EDS request names every cluster,
    /// and the same list is the same subscription, known without a set of 10,000 names.
    request_names: Vec<String>,
}

/// The one type whose SotW responses carry only what changed (see the module comment).
const SENT_WHEN_CHANGED: &str = type_url::ENDPOINT;

fn wanted(names: &BTreeSet<String>, name: &str) -> bool {
    names.is_empty() || names.contains("*") || names.contains(name)
}

impl TypeState {
    /// The resources the last response carried at content this Envoy did not ACK before:
    /// what a NACK of it can have refused, name -> hash.
    fn changed_in_last_response(&self) -> Vec<(String, String)> {
        let Some(typed) = &self.sent.typed else { return Vec::new() };
        self.sent_names
            .iter()
            .filter(|name| !self.sent.kept.contains_key(*name))
            .filter_map(|name| Some((name.clone(), typed.hashes.get(name)?.clone())))
            .filter(|(name, hash)| self.acked.of(name).is_none_or(|(_, good)| good != *hash))
            .collect()
    }

    /// The ACK of the last response: its content is this Envoy's last good one, and the
    /// quarantine of what it carried at other content than refused is over.
    fn acked_last(&mut self) {
        self.acked_version = self.sent_version.clone();
        self.acked_from = self.sent_from.clone();
        self.acked = self.sent.clone();
        let kept = &self.acked.kept;
        self.quarantine.retain(|name| kept.contains_key(name));
    }

    /// The names the next response of `type_url` carries: every one wanted, but for EDS
    /// only those whose content this Envoy was not sent, and those of `warming` clusters.
    fn names_to_send(&self, type_url: &str, typed: &TypedResources, warming: &BTreeSet<String>) -> Vec<String> {
        let lacks = |name: &String| {
            warming.contains(name) || typed.hashes.get(name).is_none_or(|hash| self.held.get(name) != Some(hash))
        };
        let only_changed = type_url == SENT_WHEN_CHANGED;
        typed.resources.keys().filter(|name| wanted(&self.names, name) && (!only_changed || lacks(name))).cloned().collect()
    }

    /// [`Self::names_to_send`] for EDS when `held` is complete for `before`: the wanted
    /// names `typed` changed or added since, and the `warming` clusters'; what it removed
    /// is dropped from `held` here.
    fn lacking_since(&mut self, before: &TypedResources, typed: &TypedResources, warming: &BTreeSet<String>) -> Vec<String> {
        let mut names = BTreeSet::new();
        for item in before.hashes.diff(&typed.hashes) {
            match item {
                DiffItem::Add(name, _) | DiffItem::Update { new: (name, _), .. } => {
                    if wanted(&self.names, name) {
                        names.insert(name.clone());
                    }
                }
                DiffItem::Remove(name, _) => {
                    self.held.remove(name);
                }
            }
        }
        names.extend(warming.iter().filter(|name| typed.resources.contains_key(*name) && wanted(&self.names, name)).cloned());
        names.into_iter().collect()
    }

    /// Records a response carrying `sent` (name, hash of the content sent: the snapshot's, or
    /// a quarantined resource's last good one): Envoy holds those, and no longer what it
    /// unsubscribed from or the snapshot dropped. Returns the names whose
    /// content this Envoy did not hold before.
    /// `whole`: whether to drop what is no longer wanted or in the snapshot (a diff from a
    /// synced map dropped those already).
    fn hold(&mut self, typed: &TypedResources, sent: &[(String, String)], whole: bool) -> BTreeSet<String> {
        if whole {
            self.held.retain(|name, _| typed.resources.contains_key(name) && wanted(&self.names, name));
        }
        let mut changed = BTreeSet::new();
        for (name, hash) in sent {
            let before = self.held.insert(name.clone(), hash.clone());
            if hash.is_empty() || before.as_ref() != Some(hash) {
                changed.insert(name.clone());
            }
        }
        changed
    }

    /// The names a request asked for (`names`, when its list differs from the last one's).
    fn subscribe(&mut self, names: Option<BTreeSet<String>>, listed: &[String]) {
        if let Some(names) = names {
            if names != self.names {
                self.synced = None;
            }
            self.names = names;
            self.request_names = listed.to_vec();
        }
    }

    /// Envoy may hold none, some or all of a NACKed response (it applies what it can): what
    /// it carried counts as not held, so the next response of this type carries it again.
    fn forget_rejected(&mut self) {
        self.synced = None;
        for name in &self.sent_names {
            self.held.remove(name);
        }
    }
}

#[derive(Debug, Default)]
pub struct SotwStream {
    types: BTreeMap<String, TypeState>,
    nonce_counter: u64,
    /// The CDS nonce whose warming clusters were last answered with the endpoints again.
    endpoints_rewarmed_for: Option<String>,
    /// The clusters the last CDS response changed or added: Envoy re-creates them, and
    /// they warm until they get their endpoints again.
    /// EDS responses carry their endpoints until that CDS response is ACKed.
    warming_clusters: BTreeSet<String>,
}

/// What one request or snapshot does to a SotW stream.
pub type SotwStep = Step<DiscoveryResponse>;

impl SotwStream {
    pub fn on_request(&mut self, request: &DiscoveryRequest, snapshot: &Snapshot) -> SotwStep {
        let mut step = SotwStep::default();
        let state = self.types.entry(request.type_url.clone()).or_default();
        // The subscription, made again only when the list differs from the last one.
        let names: Option<BTreeSet<String>> =
            (state.request_names != request.resource_names).then(|| request.resource_names.iter().cloned().collect());
        if !request.response_nonce.is_empty() {
            if state.sent_nonce.as_deref() != Some(request.response_nonce.as_str()) {
                return step; // stale: a response already superseded this one
            }
            if let Some(error) = &request.error_detail {
                step.events.push(StreamEvent::Nack {
                    type_url: request.type_url.clone(),
                    version: state.sent_version.clone().unwrap_or_default(),
                    nonce: request.response_nonce.clone(),
                    detail: error.message.clone(),
                    resources: state.sent_names.iter().cloned().collect(),
                });
                state.forget_rejected();
                state.subscribe(names, &request.resource_names);
                let changed = state.changed_in_last_response();
                let refused = refused(&error.message, changed.iter().map(|(n, h)| (n.as_str(), h.as_str())));
                if state.quarantine.add(refused) {
                    step.responses.extend(self.respond(&request.type_url, snapshot));
                }
                return step;
            }
            state.acked_last();
            step.events.push(StreamEvent::Ack {
                type_url: request.type_url.clone(),
                version: request.version_info.clone(),
                nonce: request.response_nonce.clone(),
                quarantined: state.quarantine.names(),
            });
            if request.type_url == type_url::CLUSTER {
                self.warming_clusters.clear(); // Envoy ACKs CDS once its clusters warmed
            }
            if names.as_ref().is_none_or(|n| *n == state.names) {
                if let Some(response) = self.rewarm_endpoints(&request.type_url, snapshot) {
                    step.responses.push(response);
                    return step;
                }
                // An ACK may be what held routes were waiting for.
                step.responses.extend(super::step::send_gated_if_ready(self, snapshot));
                return step;
            }
        }
        state.subscribe(names, &request.resource_names);
        if let Some(response) = self.respond(&request.type_url, snapshot) {
            step.responses.push(response);
        }
        step
    }

    /// A new snapshot: every subscribed cluster and endpoint type whose version differs
    /// from what this stream was last sent; filter configs, listeners and routes follow once
    /// the clusters are ready (now, or on a later ACK).
    pub fn on_snapshot(&mut self, snapshot: &Snapshot) -> SotwStep {
        super::step::on_snapshot(self, snapshot)
    }

    /// A changed cluster warms until it gets its endpoints, and Envoy holds the CDS ACK until
    /// then; it asks for them with an EDS request naming what it already has, which reads
    /// as a plain ACK. While a CDS response is unanswered, that request is answered with the
    /// endpoints again, once per CDS response (so a slow CDS ACK cannot make a loop).
    fn rewarm_endpoints(&mut self, type_url: &str, snapshot: &Snapshot) -> Option<DiscoveryResponse> {
        if type_url != type_url::ENDPOINT {
            return None;
        }
        let clusters = self.types.get(type_url::CLUSTER)?;
        let cds_nonce = clusters.sent_nonce.clone()?;
        let cds_unanswered = clusters.sent_version != clusters.acked_version;
        if !cds_unanswered || self.endpoints_rewarmed_for.as_deref() == Some(cds_nonce.as_str()) {
            return None;
        }
        self.endpoints_rewarmed_for = Some(cds_nonce);
        self.respond(type_url, snapshot)
    }

    /// The snapshot's resources of one type this stream asked for, quarantined ones at
    /// their last good content (or left out).
    fn respond(&mut self, type_url: &str, snapshot: &Snapshot) -> Option<DiscoveryResponse> {
        let typed = snapshot.types.get(type_url)?;
        self.nonce_counter += 1;
        let nonce = self.nonce_counter.to_string();
        let state = self.types.entry(type_url.to_owned()).or_default();
        let synced = state.synced.clone().filter(|_| type_url == SENT_WHEN_CHANGED && state.quarantine.is_empty());
        let names = match &synced {
            Some(before) => state.lacking_since(before, typed, &self.warming_clusters),
            None => state.names_to_send(type_url, typed, &self.warming_clusters),
        };
        let mut resources = Vec::new();
        let mut sent_names = BTreeSet::new();
        let mut kept = Kept::new();
        // What this Envoy holds after this response: name -> hash of the content sent.
        let mut carried = Vec::new();
        for name in names {
            let Some(any) = typed.resources.get(&name) else { continue };
            let hash = typed.hashes.get(&name).cloned().unwrap_or_default();
            let content = if state.quarantine.holds(&name, &hash) {
                let good = state.acked.of(&name);
                kept.insert(name.clone(), good.clone());
                good
            } else {
                Some((any.clone(), hash))
            };
            if let Some((any, hash)) = content {
                resources.push((*any).clone());
                sent_names.insert(name.clone());
                carried.push((name, hash));
            }
        }
        let changed = state.hold(typed, &carried, synced.is_none());
        state.synced = (type_url == SENT_WHEN_CHANGED && kept.is_empty() && state.quarantine.is_empty()).then(|| typed.clone());
        let version = version_with_kept(&typed.version, &kept);
        state.sent_names = sent_names;
        state.sent = Content { typed: Some(typed.clone()), kept };
        state.sent_version = Some(version.clone());
        state.sent_from = Some(typed.version.clone());
        state.sent_nonce = Some(nonce.clone());
        if type_url == type_url::CLUSTER {
            // An assignment is named by its cluster's name (translate/cluster.rs).
            self.warming_clusters = changed;
        }
        Some(DiscoveryResponse {
            version_info: version,
            resources,
            type_url: type_url.to_owned(),
            nonce,
            ..Default::default()
        })
    }
}

impl SendsTypes for SotwStream {
    type Response = DiscoveryResponse;

    /// A type goes again only when the snapshot's version of it is not the one last sent.
    fn respond_if_changed(&mut self, type_url: &str, snapshot: &Snapshot) -> Option<DiscoveryResponse> {
        let state = self.types.get(type_url)?;
        let typed = snapshot.types.get(type_url)?;
        if state.sent_from.as_deref() == Some(typed.version.as_str()) {
            return None;
        }
        self.respond(type_url, snapshot)
    }

    /// Whether this Envoy ACKed the snapshot's clusters and endpoints (a quarantined one at
    /// its last good content, or none) and holds the endpoints of every cluster but the
    /// quarantined ones (a cluster it never accepted asks for none).
    fn clusters_ready(&self, snapshot: &Snapshot) -> bool {
        let acked = |type_url: &str| {
            let version = snapshot.types.get(type_url).map(|t| t.version.as_str());
            self.types.get(type_url).is_some_and(|s| s.acked_from.as_deref() == version)
        };
        let endpoints = self.types.get(type_url::ENDPOINT);
        let clusters = self.types.get(type_url::CLUSTER);
        let held = |name: &str| {
            endpoints.is_some_and(|s| s.held.contains_key(name) || s.quarantine.contains(name))
                || clusters.is_some_and(|s| s.quarantine.contains(name))
        };
        let all_endpoints = snapshot.types.get(type_url::ENDPOINT).is_none_or(|t| t.resources.keys().all(|name| held(name)));
        acked(type_url::CLUSTER) && acked(type_url::ENDPOINT) && all_endpoints
    }
}

/// The snapshot's version of a type, or, when a response keeps quarantined resources at
/// other content, a version of its own: the Envoy runs something the snapshot is not.
fn version_with_kept(version: &str, kept: &Kept) -> String {
    if kept.is_empty() {
        return version.to_owned();
    }
    let held: Vec<String> = kept.iter().map(|(name, good)| format!("{name}={}", good.as_ref().map_or("", |(_, hash)| hash.as_str()))).collect();
    format!("{version}-quarantine-{}", crate::hash::short_hash(held.join(",").as_bytes()))
}

#[cfg(test)]
#[path = "sotw_tests.rs"]
mod tests;
#[cfg(test)]
#[path = "sotw_eds_props.rs"]
mod eds_props;
