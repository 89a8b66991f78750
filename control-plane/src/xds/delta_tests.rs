
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use envoy_types::pb::google::rpc::Status as RpcStatus;

use super::*;
use crate::publish::build_snapshot;
use crate::registry::Registry;

fn snapshot(services: &[(&str, u16)], previous: Option<&Snapshot>) -> Snapshot {
    let mut yaml = crate::test_support::AUTH.to_owned() + "services:\n";
    for (name, port) in services {
        yaml += &format!("  - name: {name}\n    routes: [{{prefix: /{name}}}]\n    instances: [{{address: 127.0.0.1, port: {port}}}]\n");
    }
    let options = crate::test_support::translate_options(8080);
    build_snapshot(&Registry::parse("r", &yaml).unwrap(), &crate::registry::LiveInstances::new(), &[], &options, previous).unwrap()
}

fn subscribe(t: &str, names: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: t.to_owned(),
        resource_names_subscribe: names.iter().map(|n| (*n).to_owned()).collect(),
        ..Default::default()
    }
}

fn ack(t: &str, nonce: &str) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest { type_url: t.to_owned(), response_nonce: nonce.to_owned(), ..Default::default() }
}

/// Subscribes to everything and ACKs every response, as a healthy Envoy does.
fn settle(stream: &mut DeltaStream, snap: &Snapshot, mut pending: Vec<DeltaDiscoveryResponse>) -> Vec<DeltaDiscoveryResponse> {
    let mut seen = Vec::new();
    while let Some(r) = pending.pop() {
        let step = stream.on_request(&ack(&r.type_url, &r.nonce), snap);
        pending.extend(step.responses);
        seen.push(r);
    }
    seen
}

#[test]
fn only_changed_resources_are_sent_and_removals_are_named() {
    let first = snapshot(&[("a", 1), ("b", 1)], None);
    let mut stream = DeltaStream::default();
    let mut sent = Vec::new();
    sent.extend(stream.on_request(&subscribe(type_url::CLUSTER, &[]), &first).responses);
    sent.extend(stream.on_request(&subscribe(type_url::ENDPOINT, &["svc_a", "svc_b"]), &first).responses);
    sent.extend(stream.on_request(&subscribe(type_url::LISTENER, &[]), &first).responses);
    sent.extend(stream.on_request(&subscribe(type_url::ROUTE, &["stagedoor_routes"]), &first).responses);
    let seen = settle(&mut stream, &first, sent);
    assert!(seen.iter().any(|r| r.type_url == type_url::ROUTE), "routes follow once clusters are ACKed");

    // One instance changes: one EDS resource goes, nothing else.
    let second = snapshot(&[("a", 2), ("b", 1)], Some(&first));
    let step = stream.on_snapshot(&second);
    assert_eq!(step.responses.len(), 1);
    assert_eq!(step.responses[0].type_url, type_url::ENDPOINT);
    let names: Vec<_> = step.responses[0].resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["svc_a"]);
    settle(&mut stream, &second, step.responses);

    // A service goes: its cluster and endpoints are named as removed.
    let third = snapshot(&[("a", 2)], Some(&second));
    let step = stream.on_snapshot(&third);
    let cds = step.responses.iter().find(|r| r.type_url == type_url::CLUSTER).unwrap();
    assert_eq!(cds.removed_resources, ["svc_b"]);
    assert!(cds.resources.is_empty());
}

#[test]
fn a_nack_is_reported_and_not_answered_with_the_same_content() {
    let first = snapshot(&[("a", 1)], None);
    let mut stream = DeltaStream::default();
    let r = stream.on_request(&subscribe(type_url::CLUSTER, &[]), &first).responses.remove(0);
    let mut nack = ack(type_url::CLUSTER, &r.nonce);
    nack.error_detail = Some(RpcStatus { code: 3, message: "bad cluster".into(), details: vec![] });
    let step = stream.on_request(&nack, &first);
    assert!(step.responses.is_empty());
    assert!(matches!(&step.events[0], StreamEvent::Nack { detail, .. } if detail == "bad cluster"));
    let carried: Vec<String> = r.resources.iter().map(|x| x.name.clone()).collect();
    assert!(
        matches!(&step.events[0], StreamEvent::Nack { resources, .. } if *resources == carried),
        "the NACK names exactly the resources the rejected response carried: {:?}",
        step.events
    );
    assert!(stream.on_snapshot(&first).responses.is_empty(), "same snapshot, nothing resent");
}

#[test]
fn a_reconnecting_envoy_gets_its_subscriptions_answered() {
    let first = snapshot(&[("a", 1)], None);
    let mut stream = DeltaStream::default();
    let mut req = subscribe(type_url::CLUSTER, &[]);
    req.initial_resource_versions.insert("svc_a".into(), "old".into());
    let step = stream.on_request(&req, &first);
    assert_eq!(step.responses[0].resources.len(), 1, "what it held is refreshed");
}

/// Subscribes to every type and ACKs until the stream is quiet: a healthy Envoy on `snap`.
fn settled_stream(snap: &Snapshot, eds: &[&str]) -> DeltaStream {
    let mut stream = DeltaStream::default();
    let mut sent = Vec::new();
    sent.extend(stream.on_request(&subscribe(type_url::CLUSTER, &[]), snap).responses);
    sent.extend(stream.on_request(&subscribe(type_url::ENDPOINT, eds), snap).responses);
    sent.extend(stream.on_request(&subscribe(type_url::LISTENER, &[]), snap).responses);
    sent.extend(stream.on_request(&subscribe(type_url::ROUTE, &["stagedoor_routes"]), snap).responses);
    settle(&mut stream, snap, sent);
    stream
}

fn nack(t: &str, nonce: &str) -> DeltaDiscoveryRequest {
    let mut request = ack(t, nonce);
    request.error_detail = Some(RpcStatus { code: 3, message: "cluster svc_c rejected".into(), details: vec![] });
    request
}

fn carries_routes(responses: &[DeltaDiscoveryResponse]) -> bool {
    responses.iter().any(|r| r.type_url == type_url::LISTENER || r.type_url == type_url::ROUTE)
}

#[test]
fn routes_stay_held_when_envoy_nacks_the_clusters_they_need() {
    let first = snapshot(&[("a", 1)], None);
    let mut stream = settled_stream(&first, &["svc_a"]);

    // A new service: its cluster goes out, routes wait.
    let second = snapshot(&[("a", 1), ("c", 3)], Some(&first));
    let step = stream.on_snapshot(&second);
    assert!(!carries_routes(&step.responses), "routes wait for the new cluster");
    let cds = step.responses.iter().find(|r| r.type_url == type_url::CLUSTER).unwrap().clone();
    // Envoy asks for the new cluster's endpoints and ACKs them...
    let eds = stream.on_request(&subscribe(type_url::ENDPOINT, &["svc_c"]), &second).responses.remove(0);
    assert_eq!(eds.resources[0].name, "svc_c");
    assert!(!carries_routes(&stream.on_request(&ack(type_url::ENDPOINT, &eds.nonce), &second).responses));
    // ...but rejects the cluster: it is quarantined, and the rest of the config is no
    // longer held back by it (routes to it answer 503 on this Envoy until the registry
    // changes it; before the NACK, nothing pointed at it).
    let step = stream.on_request(&nack(type_url::CLUSTER, &cds.nonce), &second);
    assert!(matches!(&step.events[..], [StreamEvent::Nack { .. }]), "{:?}", step.events);
    assert!(!step.responses.iter().any(|r| r.type_url == type_url::CLUSTER), "the rejected cluster is not resent");
    let routes_sent = settle(&mut stream, &second, step.responses);
    assert!(carries_routes(&routes_sent), "a quarantined cluster counts as settled: {routes_sent:?}");
    assert!(stream.on_snapshot(&second).responses.is_empty(), "nothing is resent on a later push of the same snapshot");

    // The service is fixed (here: removed): its cluster goes, the ACK settles the stream.
    // Its routes are those Envoy already has (the rejected service's never went out), so
    // nothing is owed; the next route change goes out as soon as its clusters are ACKed.
    let third = snapshot(&[("a", 2)], Some(&second));
    let step = stream.on_snapshot(&third);
    assert!(!carries_routes(&step.responses), "routes still wait for the ACK of the new clusters");
    settle(&mut stream, &third, step.responses);
    let fourth = snapshot(&[("a", 2), ("d", 4)], Some(&third));
    let mut pending = stream.on_snapshot(&fourth).responses;
    // Envoy asks for the new cluster's endpoints, as it does once it has the cluster.
    pending.extend(stream.on_request(&subscribe(type_url::ENDPOINT, &["svc_d"]), &fourth).responses);
    let sent = settle(&mut stream, &fourth, pending);
    assert!(carries_routes(&sent), "nothing stays held after the fix: a new service's routes go out once ACKed");
}

#[test]
fn routes_stay_held_when_envoy_nacks_the_endpoints_they_need() {
    let first = snapshot(&[("a", 1)], None);
    let mut stream = settled_stream(&first, &["svc_a"]);
    let second = snapshot(&[("a", 2)], Some(&first));
    let eds = stream.on_snapshot(&second).responses.remove(0);
    assert_eq!(eds.type_url, type_url::ENDPOINT);
    let step = stream.on_request(&nack(type_url::ENDPOINT, &eds.nonce), &second);
    assert!(step.responses.is_empty(), "{:?}", step.responses);
}

#[test]
fn the_other_clusters_of_a_nacked_response_go_again_at_once_and_the_refused_one_stays_out() {
    let first = snapshot(&[("a", 1)], None);
    let mut stream = settled_stream(&first, &["svc_a"]);
    let second = snapshot(&[("a", 1), ("c", 3), ("d", 4)], Some(&first));
    let cds = stream.on_snapshot(&second).responses.remove(0);
    let names: Vec<_> = cds.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["svc_c", "svc_d"]);
    let eds = stream.on_request(&subscribe(type_url::ENDPOINT, &["svc_c", "svc_d"]), &second).responses.remove(0);
    stream.on_request(&ack(type_url::ENDPOINT, &eds.nonce), &second);

    // Envoy applies the clusters it can and names the one it refused: the others go again
    // at once (only an ACK says Envoy holds them), the refused one does not.
    let step = stream.on_request(&nack(type_url::CLUSTER, &cds.nonce), &second);
    let again = step.responses.iter().find(|r| r.type_url == type_url::CLUSTER).expect("the rest goes again");
    let names: Vec<_> = again.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["svc_d"]);
    let released = settle(&mut stream, &second, step.responses);
    assert!(carries_routes(&released), "the ACK of svc_d releases the routes: {released:?}");
    let later = snapshot(&[("a", 1), ("c", 3), ("d", 4), ("e", 5)], Some(&second));
    let step = stream.on_snapshot(&later);
    let cds = step.responses.iter().find(|r| r.type_url == type_url::CLUSTER).unwrap();
    let names: Vec<_> = cds.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["svc_e"], "another service's change does not carry the refused cluster again");
}

/// Services with a load-balancing policy each (a cluster edit when it changes).
fn lb_snapshot(services: &[(&str, &str)], previous: Option<&Snapshot>) -> Snapshot {
    let mut yaml = crate::test_support::AUTH.to_owned() + "services:\n";
    for (name, lb) in services {
        yaml += &format!(
            "  - name: {name}\n    routes: [{{prefix: /{name}}}]\n    instances: [{{address: 127.0.0.1, port: 1}}]\n    traffic: {{load_balancing: {{policy: {lb}}}}}\n"
        );
    }
    let options = crate::test_support::translate_options(8080);
    build_snapshot(&Registry::parse("r", &yaml).unwrap(), &crate::registry::LiveInstances::new(), &[], &options, previous).unwrap()
}

fn acked_quarantine(step: &DeltaStep) -> Option<Vec<String>> {
    step.events.iter().find_map(|e| match e {
        StreamEvent::Ack { quarantined, .. } => Some(quarantined.clone()),
        StreamEvent::Nack { .. } => None,
    })
}

#[test]
fn a_refused_cluster_stays_out_until_the_registry_changes_it_and_its_ack_ends_the_quarantine() {
    let first = lb_snapshot(&[("a", "round_robin"), ("b", "round_robin")], None);
    let mut stream = settled_stream(&first, &["svc_a", "svc_b"]);
    let mut other_node = settled_stream(&first, &["svc_a", "svc_b"]);
    let second = lb_snapshot(&[("a", "random"), ("b", "round_robin")], Some(&first));
    let cds = stream.on_snapshot(&second).responses.remove(0);
    let mut refusal = ack(type_url::CLUSTER, &cds.nonce);
    refusal.error_detail = Some(RpcStatus { code: 13, message: "Error adding/updating cluster(s) svc_a: no such policy".into(), details: vec![] });
    let step = stream.on_request(&refusal, &second);
    settle(&mut stream, &second, step.responses);

    // b changes: only b goes, and its ACK still names a as quarantined.
    let third = lb_snapshot(&[("a", "random"), ("b", "random")], Some(&second));
    let step = stream.on_snapshot(&third);
    let cds = step.responses.iter().find(|r| r.type_url == type_url::CLUSTER).unwrap().clone();
    let names: Vec<_> = cds.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["svc_b"]);
    let step = stream.on_request(&ack(type_url::CLUSTER, &cds.nonce), &third);
    assert_eq!(acked_quarantine(&step), Some(vec!["svc_a".to_owned()]));

    // The other node takes both changes as they are.
    let theirs = other_node.on_snapshot(&third).responses.remove(0);
    let names: Vec<_> = theirs.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["svc_a", "svc_b"]);

    // a changes again: it is tried again, and its ACK ends the quarantine.
    let fourth = lb_snapshot(&[("a", "least_request"), ("b", "random")], Some(&third));
    let step = stream.on_snapshot(&fourth);
    let cds = step.responses.iter().find(|r| r.type_url == type_url::CLUSTER).unwrap().clone();
    let names: Vec<_> = cds.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["svc_a"]);
    let step = stream.on_request(&ack(type_url::CLUSTER, &cds.nonce), &fourth);
    assert_eq!(acked_quarantine(&step), Some(vec![]));
}

/// Per-resource hashes are of the encoded bytes: the same registry must encode the same
/// every time (protobuf maps are HashMaps in prost, and a two-entry map encoded in either
/// order at random resent unchanged routes to every delta Envoy).
#[test]
fn the_same_registry_hashes_the_same_every_time() {
    let a = snapshot(&[("a", 1), ("c", 3)], None);
    for _ in 0..50 {
        let b = snapshot(&[("a", 1), ("c", 3)], None);
        for (t, typed) in &a.types {
            assert_eq!(typed.hashes, b.types[t].hashes, "{t}");
        }
    }
}

/// Services a and b; `public` adds a public path to a: a policy-only edit.
fn policy_snapshot(public: Option<&str>, previous: Option<&Snapshot>) -> Snapshot {
    let public = public.map(|p| format!("\n    public_paths: [\"{p}\"]")).unwrap_or_default();
    let yaml = crate::test_support::AUTH.to_owned()
        + &format!("services:\n  - name: a\n    routes: [{{prefix: /a}}]{public}\n  - name: b\n    routes: [{{prefix: /b}}]\n");
    let options = crate::test_support::translate_options(8080);
    build_snapshot(&Registry::parse("r", &yaml).unwrap(), &crate::registry::LiveInstances::new(), &[], &options, previous).unwrap()
}

#[test]
fn the_filter_config_waits_for_clusters_then_a_policy_edit_sends_it_alone() {
    let first = policy_snapshot(None, None);
    let mut stream = DeltaStream::default();
    let early = stream.on_request(&subscribe(type_url::EXTENSION_CONFIG, &["stagedoor"]), &first);
    assert!(early.responses.is_empty(), "gated like listeners until clusters are ACKed");
    let mut sent = Vec::new();
    sent.extend(stream.on_request(&subscribe(type_url::CLUSTER, &[]), &first).responses);
    sent.extend(stream.on_request(&subscribe(type_url::ENDPOINT, &["svc_a", "svc_b"]), &first).responses);
    sent.extend(stream.on_request(&subscribe(type_url::LISTENER, &[]), &first).responses);
    let seen = settle(&mut stream, &first, sent);
    let order: Vec<_> = seen.iter().map(|r| r.type_url.as_str()).filter(|t| *t == type_url::EXTENSION_CONFIG || *t == type_url::LISTENER).collect();
    assert!(order.contains(&type_url::EXTENSION_CONFIG), "{order:?}");

    let second = policy_snapshot(Some("/a/open"), Some(&first));
    let step = stream.on_snapshot(&second);
    assert_eq!(step.responses.len(), 1);
    assert_eq!(step.responses[0].type_url, type_url::EXTENSION_CONFIG);
    let names: Vec<_> = step.responses[0].resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["stagedoor"]);

    let mut nack = ack(type_url::EXTENSION_CONFIG, &step.responses[0].nonce);
    nack.error_detail = Some(RpcStatus { code: 3, message: "bad filter".into(), details: vec![] });
    let after = stream.on_request(&nack, &second);
    assert!(matches!(&after.events[..], [StreamEvent::Nack { type_url: t, .. }] if t == type_url::EXTENSION_CONFIG));
    assert!(after.responses.is_empty() && stream.on_snapshot(&second).responses.is_empty(), "not resent");
}

#[test]
fn on_a_snapshot_the_filter_config_goes_before_the_listener() {
    assert_eq!(GATED_TYPES, [type_url::EXTENSION_CONFIG, type_url::LISTENER, type_url::ROUTE]);
}

/// A delta Envoy warms a changed cluster until it gets its endpoints and never asks for
/// ones it holds (it waited out its 15 s initial fetch timeout before): they go with it.
#[test]
fn a_changed_cluster_is_followed_by_its_endpoints_even_when_they_did_not_change() {
    let with_breaker = |max: u32, previous: Option<&Snapshot>| {
        let yaml = crate::test_support::AUTH.to_owned()
            + &format!("services:\n  - name: a\n    routes: [{{prefix: /a}}]\n    instances: [{{address: 127.0.0.1, port: 1}}]\n    traffic: {{circuit_breaker: {{error_threshold_percentage: 50, volume_threshold: 20, reset_timeout_ms: 30000, max_connections: {max}}}}}\n  - name: b\n    routes: [{{prefix: /b}}]\n    instances: [{{address: 127.0.0.1, port: 1}}]\n");
        let options = crate::test_support::translate_options(8080);
        build_snapshot(&Registry::parse("r", &yaml).unwrap(), &crate::registry::LiveInstances::new(), &[], &options, previous).unwrap()
    };
    let first = with_breaker(100, None);
    let mut stream = settled_stream(&first, &["svc_a", "svc_b"]);
    let second = with_breaker(200, Some(&first));
    let step = stream.on_snapshot(&second);
    let names = |t: &str| -> Vec<String> {
        step.responses.iter().filter(|r| r.type_url == t).flat_map(|r| r.resources.iter().map(|x| x.name.clone())).collect()
    };
    assert_eq!(names(type_url::CLUSTER), ["svc_a"]);
    assert_eq!(names(type_url::ENDPOINT), ["svc_a"], "the changed cluster's unchanged endpoints go right after it");
    assert!(!carries_routes(&step.responses), "routes wait for the ACKs");
    let seen = settle(&mut stream, &second, step.responses.clone());
    assert!(!seen.iter().any(|r| r.type_url == type_url::ENDPOINT && r.resources.iter().any(|x| x.name == "svc_b")), "svc_b's cluster did not change");
}
