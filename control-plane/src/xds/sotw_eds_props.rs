//! SotW EDS responses carry only what changed: a property test against a model Envoy that
//! keeps an assignment a response leaves out, re-creates (and empties) a cluster whose CDS
//! content changed, holds the CDS ACK until its clusters have their endpoints, and asks for
//! them with an EDS request that reads as a plain ACK. After every snapshot of a random
//! sequence settles, the model holds exactly the snapshot's clusters and assignments.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::publish::build_snapshot;
use crate::registry::Registry;

/// Per service of a pool of four: absent, or (instance port, a non-default lb policy).
type Draw = BTreeMap<u8, (u16, bool)>;

fn snapshot(draw: &Draw, previous: Option<&Snapshot>) -> Snapshot {
    let mut yaml = crate::test_support::AUTH.to_owned() + "services:\n  - name: base\n    routes: [{prefix: /base}]\n";
    for (service, (port, random)) in draw {
        let lb = if *random { "\n    traffic: {load_balancing: {policy: random}}" } else { "" };
        yaml += &format!("  - name: s{service}\n    routes: [{{prefix: /s{service}}}]\n    instances: [{{address: 127.0.0.1, port: {port}}}]{lb}\n");
    }
    let options = crate::test_support::translate_options(8080);
    build_snapshot(&Registry::parse("r", &yaml).unwrap(), &crate::registry::LiveInstances::new(), &[], &options, previous).unwrap()
}

#[derive(Default)]
struct ModelEnvoy {
    clusters: BTreeMap<String, Vec<u8>>,
    assignments: BTreeMap<String, Vec<u8>>,
    warming: BTreeSet<String>,
    last: BTreeMap<String, (String, String)>,
    held_cds_ack: Option<(String, String)>,
    /// Assignments EDS responses carried, in all.
    assignments_received: usize,
}

fn request(type_url: &str, nonce: &str, version: &str, names: Vec<String>) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.to_owned(),
        response_nonce: nonce.to_owned(),
        version_info: version.to_owned(),
        resource_names: names,
        ..Default::default()
    }
}

impl ModelEnvoy {
    fn subscription(&self, type_url: &str) -> Vec<String> {
        match type_url {
            type_url::ENDPOINT => self.clusters.keys().cloned().collect(),
            type_url::EXTENSION_CONFIG => vec!["stagedoor".into()],
            type_url::ROUTE => vec!["stagedoor_routes".into()],
            _ => Vec::new(),
        }
    }

    /// Applies one response as Envoy would; returns the requests Envoy sends for it.
    fn apply(&mut self, r: &DiscoveryResponse) -> Vec<DiscoveryRequest> {
        self.last.insert(r.type_url.clone(), (r.nonce.clone(), r.version_info.clone()));
        let ack = |me: &Self| request(&r.type_url, &r.nonce, &r.version_info, me.subscription(&r.type_url));
        match r.type_url.as_str() {
            type_url::CLUSTER => {
                let now: BTreeMap<String, Vec<u8>> =
                    r.resources.iter().map(|a| (Cluster::decode(a.value.as_slice()).unwrap().name, a.value.clone())).collect();
                for (name, bytes) in &now {
                    if self.clusters.get(name) != Some(bytes) {
                        // Re-created: the new cluster has no endpoints (no EDS cache here).
                        self.assignments.remove(name);
                        self.warming.insert(name.clone());
                    }
                }
                let names_changed = !self.clusters.keys().eq(now.keys());
                self.assignments.retain(|name, _| now.contains_key(name));
                self.warming.retain(|name| now.contains_key(name));
                self.clusters = now;
                // Envoy asks for endpoints when its EDS watches change (a new, removed or
                // re-created cluster), naming every cluster it has.
                let (nonce, version) = self.last.get(type_url::ENDPOINT).cloned().unwrap_or_default();
                let ask = request(type_url::ENDPOINT, &nonce, &version, self.subscription(type_url::ENDPOINT));
                if self.warming.is_empty() {
                    return if names_changed { vec![ask, ack(self)] } else { vec![ack(self)] };
                }
                self.held_cds_ack = Some((r.nonce.clone(), r.version_info.clone()));
                vec![ask]
            }
            type_url::ENDPOINT => {
                for a in &r.resources {
                    let name = ClusterLoadAssignment::decode(a.value.as_slice()).unwrap().cluster_name;
                    if self.clusters.contains_key(&name) {
                        self.assignments.insert(name.clone(), a.value.clone());
                        self.warming.remove(&name);
                    }
                }
                self.assignments_received += r.resources.len();
                let mut out = vec![ack(self)];
                if self.warming.is_empty() {
                    if let Some((nonce, version)) = self.held_cds_ack.take() {
                        out.push(request(type_url::CLUSTER, &nonce, &version, Vec::new()));
                    }
                }
                out
            }
            _ => vec![ack(self)],
        }
    }
}

/// Delivers `responses` to the model, and its requests to the stream, until both are quiet.
fn settle(stream: &mut SotwStream, envoy: &mut ModelEnvoy, snap: &Snapshot, responses: Vec<DiscoveryResponse>) {
    let mut queue: VecDeque<DiscoveryResponse> = responses.into();
    for _ in 0..200 {
        let Some(r) = queue.pop_front() else { return };
        for req in envoy.apply(&r) {
            queue.extend(stream.on_request(&req, snap).responses);
        }
    }
    panic!("the stream and the model Envoy did not settle in 200 responses");
}

fn draws() -> impl Strategy<Value = Vec<Draw>> {
    proptest::collection::vec(proptest::collection::btree_map(0u8..4, (1u16..4, any::<bool>()), 0..4), 2..7)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn envoy_ends_up_with_every_assignment_of_each_snapshot(draws in draws()) {
        let mut envoy = ModelEnvoy::default();
        let mut stream = SotwStream::default();
        let mut snap = snapshot(&draws[0], None);
        for t in [type_url::CLUSTER, type_url::LISTENER, type_url::EXTENSION_CONFIG, type_url::ROUTE] {
            let first = stream.on_request(&request(t, "", "", envoy.subscription(t)), &snap).responses;
            settle(&mut stream, &mut envoy, &snap, first);
        }
        for draw in &draws[1..] {
            let next = snapshot(draw, Some(&snap));
            let clusters_same = next.types[type_url::CLUSTER].version == snap.types[type_url::CLUSTER].version;
            let changed = next.types[type_url::ENDPOINT].hashes.iter().filter(|(n, h)| snap.types[type_url::ENDPOINT].hashes.get(*n) != Some(h)).count();
            snap = next;
            let received_before = envoy.assignments_received;
            let step = stream.on_snapshot(&snap);
            settle(&mut stream, &mut envoy, &snap, step.responses);
            let endpoints = &snap.types[type_url::ENDPOINT];
            let want: BTreeMap<String, Vec<u8>> = endpoints.resources.iter().map(|(n, a)| (n.clone(), a.value.clone())).collect();
            prop_assert_eq!(&envoy.assignments, &want);
            let clusters: BTreeSet<&String> = snap.types[type_url::CLUSTER].resources.keys().collect();
            prop_assert_eq!(envoy.clusters.keys().collect::<BTreeSet<_>>(), clusters);
            prop_assert!(envoy.warming.is_empty() && envoy.held_cds_ack.is_none());
            prop_assert!(stream.clusters_ready(&snap));
            if clusters_same {
                prop_assert_eq!(envoy.assignments_received - received_before, changed, "an instance change sends only what changed");
            }
        }
    }
}
