use super::*;

#[test]
fn the_named_resources_are_refused_else_all_carried() {
    let carried = [("svc_venue", "h1"), ("svc_plain", "h2"), ("svc_venue_v2", "h3")];
    let detail = "Error adding/updating cluster(s) svc_venue: No load balancer factory found";
    assert_eq!(refused(detail, carried), [("svc_venue".to_owned(), "h1".to_owned())]);
    assert_eq!(refused("Unable to parse", carried).len(), 3, "a detail naming none refuses every candidate");
    assert!(refused("anything", []).is_empty());
}

#[test]
fn a_quarantine_holds_one_hash_and_ends_on_an_ack_of_other_content() {
    let mut q = Quarantine::default();
    assert!(q.add(vec![("x".into(), "bad".into())]));
    assert!(!q.add(vec![("x".into(), "bad".into())]), "the same refusal again adds nothing");
    assert!(q.holds("x", "bad") && !q.holds("x", "good") && q.contains("x"));
    q.acked("x", "bad");
    assert!(q.contains("x"), "an ACK of a response that carried the refused content keeps it");
    q.acked("x", "fixed");
    assert!(q.names().is_empty(), "an ACK of other content ends it");
    q.add(vec![("y".into(), "bad".into())]);
    q.lift("y");
    assert!(q.names().is_empty());
}

/// Property tests: both protocol state machines against a modelled Envoy that refuses
/// every cluster with the `random` policy (as an Envoy without that extension would) and
/// applies the rest, over random sequences of registry edits.
mod against_a_refusing_envoy {
    use std::collections::{BTreeMap, VecDeque};

    use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::service::discovery::v3::{
        DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    };
    use envoy_types::pb::google::protobuf::Any;
    use envoy_types::pb::google::rpc::Status as RpcStatus;
    use proptest::prelude::*;
    use prost::Message;

    use crate::publish::build_snapshot;
    use crate::registry::Registry;
    use crate::resources::type_url;
    use crate::snapshot::Snapshot;
    use crate::xds::delta::DeltaStream;
    use crate::xds::sotw::SotwStream;
    use crate::xds::status::EnvoyRegistry;
    use crate::xds::step::StreamEvent;

    const POLICIES: [&str; 3] = ["round_robin", "least_request", "random"];
    const SERVICES: [&str; 3] = ["a", "b", "c"];
    /// Messages one run may take to settle: far more than a healthy exchange needs.
    const MESSAGES: usize = 400;

    /// Each service's policy (an index into POLICIES) and b's prefix (a route edit).
    type Draw = ([usize; 3], bool);

    fn draws() -> impl Strategy<Value = Vec<Draw>> {
        proptest::collection::vec(([0usize..3, 0usize..3, 0usize..3], any::<bool>()), 1..6)
    }

    fn snapshot(draw: &Draw, previous: Option<&Snapshot>) -> Snapshot {
        let mut yaml = crate::test_support::AUTH.to_owned() + "services:\n";
        for (i, name) in SERVICES.iter().enumerate() {
            let prefix = if *name == "b" && draw.1 { "/b2".to_owned() } else { format!("/{name}") };
            yaml += &format!(
                "  - name: {name}\n    routes: [{{prefix: {prefix}}}]\n    instances: [{{address: 127.0.0.1, port: 1}}]\n    traffic: {{load_balancing: {{policy: {}}}}}\n",
                POLICIES[draw.0[i]]
            );
        }
        let options = crate::test_support::translate_options(8080);
        build_snapshot(&Registry::parse("r", &yaml).unwrap(), &crate::registry::LiveInstances::new(), &[], &options, previous).unwrap()
    }

    fn cluster(any: &Any) -> Cluster {
        Cluster::decode(any.value.as_slice()).unwrap()
    }

    fn refuses(any: &Any) -> bool {
        cluster(any).lb_policy == LbPolicy::Random as i32
    }

    fn names_for(t: &str) -> Vec<String> {
        let names: &[&str] = match t {
            t if t == type_url::ENDPOINT => &["svc_a", "svc_b", "svc_c"],
            t if t == type_url::EXTENSION_CONFIG => &["stagedoor"],
            t if t == type_url::ROUTE => &["stagedoor_routes"],
            _ => &[],
        };
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    const TYPES: [&str; 5] = [type_url::CLUSTER, type_url::ENDPOINT, type_url::LISTENER, type_url::EXTENSION_CONFIG, type_url::ROUTE];

    fn refusal(names: &[String]) -> Option<RpcStatus> {
        let message = format!("Error adding/updating cluster(s) {}: no such load balancer", names.join(", "));
        (!names.is_empty()).then(|| RpcStatus { code: 13, message, details: vec![] })
    }

    /// Per stream, the clusters refused at the content refused, until a snapshot changes
    /// them: what must never be sent again.
    #[derive(Default)]
    struct Refused(BTreeMap<String, Any>);

    impl Refused {
        fn on_snapshot(&mut self, snap: &Snapshot) {
            let clusters = &snap.types[type_url::CLUSTER].resources;
            self.0.retain(|name, any| clusters.get(name).is_some_and(|now| **now == *any));
        }
        fn check_sent(&self, name: &str, any: &Any) -> Result<(), TestCaseError> {
            prop_assert!(self.0.get(name) != Some(any), "{name} sent again at the content refused");
            Ok(())
        }
    }

    /// The clusters Envoy holds must be the snapshot's but for the ones it refuses, which
    /// it must hold at other content (its last good one) or not at all; routes and
    /// listeners must be the snapshot's (nothing holds them back).
    fn check_converged(snap: &Snapshot, held: &BTreeMap<String, BTreeMap<String, Any>>, events: &[StreamEvent]) -> Result<(), TestCaseError> {
        let mut refused_now = Vec::new();
        for (name, any) in &snap.types[type_url::CLUSTER].resources {
            let holds = held.get(type_url::CLUSTER).and_then(|h| h.get(name));
            if refuses(any) {
                prop_assert!(holds != Some(&**any), "{name} is held at refused content");
                refused_now.push(name.clone());
            } else {
                prop_assert_eq!(holds, Some(&**any), "{} is held at the snapshot's content", name);
            }
        }
        for t in [type_url::LISTENER, type_url::ROUTE] {
            let want: BTreeMap<String, Any> = snap.types[t].resources.iter().map(|(n, a)| (n.clone(), (**a).clone())).collect();
            prop_assert_eq!(held.get(t), Some(&want), "{} converged", type_url::short(t));
        }
        // The ledger, fed the stream's events as the server feeds it, has exactly those in force.
        let envoys = EnvoyRegistry::default();
        envoys.connect(1, "gw", "c", "test");
        for event in events {
            envoys.record(1, event, &snap.origins);
        }
        let node = envoys.nodes().remove(0);
        let mut in_force: Vec<String> =
            node.types.get("CDS").map(|t| t.in_force().flat_map(|n| n.refused()).map(|r| r.name.clone()).collect()).unwrap_or_default();
        in_force.sort();
        prop_assert_eq!(in_force, refused_now, "the ledger shows what stays quarantined");
        Ok(())
    }

    /// A SotW Envoy: applies each response (the clusters it can), ACKs or NACKs it.
    fn sotw_answer(held: &mut BTreeMap<String, BTreeMap<String, Any>>, r: &DiscoveryResponse) -> DiscoveryRequest {
        let mut refused = Vec::new();
        let held_type = held.entry(r.type_url.clone()).or_default();
        let mut next = BTreeMap::new();
        for (i, any) in r.resources.iter().enumerate() {
            if r.type_url != type_url::CLUSTER {
                next.insert(i.to_string(), any.clone());
                continue;
            }
            let name = cluster(any).name;
            if refuses(any) {
                if let Some(old) = held_type.get(&name) {
                    next.insert(name.clone(), old.clone());
                }
                refused.push(name);
            } else {
                next.insert(name, any.clone());
            }
        }
        if r.type_url == type_url::LISTENER || r.type_url == type_url::ROUTE {
            // Named by the resources' own names, for the convergence check.
            next = r.resources.iter().map(|any| (resource_name(&r.type_url, any), any.clone())).collect();
        }
        *held_type = next;
        DiscoveryRequest {
            type_url: r.type_url.clone(),
            response_nonce: r.nonce.clone(),
            version_info: r.version_info.clone(),
            resource_names: names_for(&r.type_url),
            error_detail: refusal(&refused),
            ..Default::default()
        }
    }

    fn resource_name(t: &str, any: &Any) -> String {
        use envoy_types::pb::envoy::config::listener::v3::Listener;
        use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
        if t == type_url::LISTENER {
            Listener::decode(any.value.as_slice()).unwrap().name
        } else {
            RouteConfiguration::decode(any.value.as_slice()).unwrap().name
        }
    }

    fn run_sotw(draws: &[Draw]) -> Result<(), TestCaseError> {
        let mut stream = SotwStream::default();
        let mut held = BTreeMap::new();
        let mut refused = Refused::default();
        let mut events = Vec::new();
        let mut queue = VecDeque::new();
        let mut previous: Option<Snapshot> = None;
        let mut budget = MESSAGES;
        for (i, draw) in draws.iter().enumerate() {
            let snap = snapshot(draw, previous.as_ref());
            refused.on_snapshot(&snap);
            if i == 0 {
                for t in TYPES {
                    let first = DiscoveryRequest { type_url: t.to_owned(), resource_names: names_for(t), ..Default::default() };
                    queue.extend(stream.on_request(&first, &snap).responses);
                }
            } else {
                queue.extend(stream.on_snapshot(&snap).responses);
            }
            while let Some(r) = queue.pop_front() {
                budget = budget.checked_sub(1).ok_or_else(|| TestCaseError::fail("no convergence: a loop"))?;
                if r.type_url == type_url::CLUSTER {
                    for any in &r.resources {
                        refused.check_sent(&cluster(any).name, any)?;
                    }
                }
                let answer = sotw_answer(&mut held, &r);
                if answer.error_detail.is_some() {
                    for any in r.resources.iter().filter(|a| refuses(a)) {
                        refused.0.insert(cluster(any).name, any.clone());
                    }
                }
                let step = stream.on_request(&answer, &snap);
                events.extend(step.events);
                queue.extend(step.responses);
            }
            previous = Some(snap);
        }
        check_converged(previous.as_ref().unwrap(), &held, &events)
    }

    /// A delta Envoy: applies each response's resources (the clusters it can) and removals.
    fn delta_answer(held: &mut BTreeMap<String, BTreeMap<String, Any>>, r: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
        let held_type = held.entry(r.type_url.clone()).or_default();
        let mut refused = Vec::new();
        for resource in &r.resources {
            let any = resource.resource.clone().unwrap();
            if r.type_url == type_url::CLUSTER && refuses(&any) {
                refused.push(resource.name.clone());
            } else {
                held_type.insert(resource.name.clone(), any);
            }
        }
        for name in &r.removed_resources {
            held_type.remove(name);
        }
        DeltaDiscoveryRequest { type_url: r.type_url.clone(), response_nonce: r.nonce.clone(), error_detail: refusal(&refused), ..Default::default() }
    }

    fn run_delta(draws: &[Draw]) -> Result<(), TestCaseError> {
        let mut stream = DeltaStream::default();
        let mut held = BTreeMap::new();
        let mut refused = Refused::default();
        let mut events = Vec::new();
        let mut queue = VecDeque::new();
        let mut previous: Option<Snapshot> = None;
        let mut budget = MESSAGES;
        for (i, draw) in draws.iter().enumerate() {
            let snap = snapshot(draw, previous.as_ref());
            refused.on_snapshot(&snap);
            if i == 0 {
                for t in TYPES {
                    let first = DeltaDiscoveryRequest { type_url: t.to_owned(), resource_names_subscribe: names_for(t), ..Default::default() };
                    queue.extend(stream.on_request(&first, &snap).responses);
                }
            } else {
                queue.extend(stream.on_snapshot(&snap).responses);
            }
            while let Some(r) = queue.pop_front() {
                budget = budget.checked_sub(1).ok_or_else(|| TestCaseError::fail("no convergence: a loop"))?;
                if r.type_url == type_url::CLUSTER {
                    for resource in &r.resources {
                        refused.check_sent(&resource.name, resource.resource.as_ref().unwrap())?;
                    }
                }
                let answer = delta_answer(&mut held, &r);
                if answer.error_detail.is_some() {
                    for resource in r.resources.iter().filter(|x| refuses(x.resource.as_ref().unwrap())) {
                        refused.0.insert(resource.name.clone(), resource.resource.clone().unwrap());
                    }
                }
                let step = stream.on_request(&answer, &snap);
                events.extend(step.events);
                queue.extend(step.responses);
            }
            previous = Some(snap);
        }
        check_converged(previous.as_ref().unwrap(), &held, &events)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn sotw_never_resends_a_refused_cluster_and_converges_on_the_rest(draws in draws()) {
            run_sotw(&draws)?;
        }

        #[test]
        fn delta_never_resends_a_refused_cluster_and_converges_on_the_rest(draws in draws()) {
            run_delta(&draws)?;
        }
    }
}
