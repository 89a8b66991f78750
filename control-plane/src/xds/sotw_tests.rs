
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::google::rpc::Status as RpcStatus;

use super::*;
use crate::publish::build_snapshot;
use crate::registry::Registry;

fn snapshot(port: u16, previous: Option<&Snapshot>) -> Snapshot {
    let yaml = crate::test_support::AUTH.to_owned() + &format!(
        "services:\n  - name: a\n    routes: [{{prefix: /a}}]\n    instances: [{{address: 127.0.0.1, port: {port}}}]\n  - name: b\n    routes: [{{prefix: /b}}]\n"
    );
    let options = crate::test_support::translate_options(8080);
    build_snapshot(&Registry::parse("r", &yaml).unwrap(), &crate::registry::LiveInstances::new(), &[], &options, previous).unwrap()
}

fn request(type_url: &str, nonce: &str, version: &str, names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.to_owned(),
        response_nonce: nonce.to_owned(),
        version_info: version.to_owned(),
        resource_names: names.iter().map(|n| (*n).to_owned()).collect(),
        ..Default::default()
    }
}

/// The names of the resources a response carries (each decoded by its type).
fn names_in(response: &DiscoveryResponse) -> Vec<String> {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use prost::Message;
    response
        .resources
        .iter()
        .map(|any| match response.type_url.as_str() {
            type_url::ENDPOINT => ClusterLoadAssignment::decode(any.value.as_slice()).unwrap().cluster_name,
            type_url::CLUSTER => Cluster::decode(any.value.as_slice()).unwrap().name,
            other => panic!("names_in: {other}"),
        })
        .collect()
}

#[test]
fn first_request_gets_the_current_resources() {
    let snap = snapshot(1, None);
    let mut stream = SotwStream::default();
    let step = stream.on_request(&request(type_url::CLUSTER, "", "", &[]), &snap);
    assert_eq!(step.responses.len(), 1);
    assert_eq!(step.responses[0].resources.len(), 2);
    assert_eq!(step.responses[0].version_info, snap.types[type_url::CLUSTER].version);
    assert!(step.events.is_empty());
}

#[test]
fn eds_sends_only_the_names_asked_for_and_new_names_after_an_ack() {
    let snap = snapshot(1, None);
    let mut stream = SotwStream::default();
    let first = stream.on_request(&request(type_url::ENDPOINT, "", "", &["svc_a"]), &snap);
    assert_eq!(first.responses[0].resources.len(), 1);
    let sent = &first.responses[0];
    let ack_same = stream.on_request(&request(type_url::ENDPOINT, &sent.nonce, &sent.version_info, &["svc_a"]), &snap);
    assert!(ack_same.responses.is_empty(), "a plain ACK needs no reply");
    let acked = StreamEvent::Ack { type_url: type_url::ENDPOINT.into(), version: sent.version_info.clone(), nonce: sent.nonce.clone(), quarantined: vec![] };
    assert_eq!(ack_same.events, [acked]);
    let more = stream.on_request(&request(type_url::ENDPOINT, &sent.nonce, &sent.version_info, &["svc_a", "svc_b"]), &snap);
    assert_eq!(more.responses.len(), 1, "a changed subscription is answered");
    assert_eq!(names_in(&more.responses[0]), ["svc_b"], "with what Envoy lacks, not what it holds");
}

#[test]
fn a_stale_nonce_is_ignored() {
    let snap = snapshot(1, None);
    let mut stream = SotwStream::default();
    stream.on_request(&request(type_url::CLUSTER, "", "", &[]), &snap);
    let step = stream.on_request(&request(type_url::CLUSTER, "old-nonce", "", &[]), &snap);
    assert!(step.responses.is_empty() && step.events.is_empty());
}

#[test]
fn a_nack_is_recorded_and_the_rejected_version_is_never_resent() {
    let snap = snapshot(1, None);
    let mut stream = SotwStream::default();
    let sent = stream.on_request(&request(type_url::LISTENER, "", "", &[]), &snap).responses.remove(0);
    let mut nack = request(type_url::LISTENER, &sent.nonce, "", &[]);
    nack.error_detail = Some(RpcStatus { code: 3, message: "bad wasm".into(), details: vec![] });
    let step = stream.on_request(&nack, &snap);
    // The detail names none: every listener is refused, and this Envoy never held one, so
    // the reply (which settles the type) carries none of them.
    assert_eq!(step.responses.len(), 1);
    assert!(step.responses[0].resources.is_empty(), "never resend what was just rejected");
    let sent_listeners: Vec<String> = snap.types[type_url::LISTENER].resources.keys().cloned().collect();
    assert!(!sent_listeners.is_empty(), "the NACK names what the rejected response carried");
    assert_eq!(
        step.events,
        [StreamEvent::Nack {
            type_url: type_url::LISTENER.into(),
            version: sent.version_info.clone(),
            nonce: sent.nonce.clone(),
            detail: "bad wasm".into(),
            resources: sent_listeners,
        }]
    );
    assert!(stream.on_snapshot(&snap).responses.is_empty(), "same snapshot: still not resent");
}

#[test]
fn a_new_snapshot_pushes_only_changed_types_in_push_order() {
    let first = snapshot(1, None);
    let mut stream = SotwStream::default();
    for t in [type_url::ROUTE, type_url::LISTENER, type_url::ENDPOINT, type_url::CLUSTER] {
        let names: &[&str] = if t == type_url::ENDPOINT { &["svc_a", "svc_b"] } else { &[] };
        stream.on_request(&request(t, "", "", names), &first);
    }
    let second = snapshot(2, Some(&first));
    assert_eq!(second.types[type_url::CLUSTER].version, first.types[type_url::CLUSTER].version);
    assert_ne!(second.types[type_url::ENDPOINT].version, first.types[type_url::ENDPOINT].version);
    let step = stream.on_snapshot(&second);
    let types: Vec<_> = step.responses.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(types, [type_url::ENDPOINT], "only the endpoints changed");

    let same = snapshot(2, Some(&second));
    assert_eq!(same.version, second.version, "an unchanged registry keeps its version");
}

#[test]
fn routes_wait_until_the_envoy_has_the_new_clusters_and_their_endpoints() {
    let first = snapshot(1, None);
    let mut stream = SotwStream::default();
    // Subscribe to everything and ACK the first snapshot.
    let mut sent = std::collections::BTreeMap::new();
    for (t, names) in [
        (type_url::CLUSTER, vec![]),
        (type_url::ENDPOINT, vec!["svc_a", "svc_b"]),
        (type_url::LISTENER, vec![]),
        (type_url::ROUTE, vec!["stagedoor_routes"]),
    ] {
        let r = stream.on_request(&request(t, "", "", &names), &first).responses.remove(0);
        stream.on_request(&request(t, &r.nonce, &r.version_info, &names), &first);
        sent.insert(t, names);
    }
    // A new service: clusters first, routes held.
    let yaml = crate::test_support::AUTH.to_owned()
        + "services:\n  - name: a\n    routes: [{prefix: /a}]\n  - name: b\n    routes: [{prefix: /b}]\n  - name: c\n    routes: [{prefix: /c}]\n";
    let options = crate::test_support::translate_options(8080);
    let second = build_snapshot(&Registry::parse("r", &yaml).unwrap(), &crate::registry::LiveInstances::new(), &[], &options, Some(&first)).unwrap();
    let step = stream.on_snapshot(&second);
    let types: Vec<_> = step.responses.iter().map(|r| r.type_url.as_str()).collect();
    assert!(!types.contains(&type_url::ROUTE) && !types.contains(&type_url::LISTENER), "routes wait: {types:?}");
    let cds = step.responses.iter().find(|r| r.type_url == type_url::CLUSTER).unwrap().clone();
    // Envoy ACKs CDS and asks for the new cluster's endpoints.
    assert!(stream.on_request(&request(type_url::CLUSTER, &cds.nonce, &cds.version_info, &[]), &second).responses.is_empty());
    let eds_names = ["svc_a", "svc_b", "svc_c"];
    let eds = stream.on_request(&request(type_url::ENDPOINT, "", &cds.version_info, &eds_names), &second).responses.remove(0);
    assert_eq!(names_in(&eds), ["svc_c"], "the new cluster's endpoints; Envoy keeps the others");
    // Only the ACK of those endpoints releases the routes.
    let step = stream.on_request(&request(type_url::ENDPOINT, &eds.nonce, &eds.version_info, &eds_names), &second);
    let types: Vec<_> = step.responses.iter().map(|r| r.type_url.as_str()).collect();
    assert!(types.contains(&type_url::ROUTE), "{types:?}");
}

/// Services a and b; `public` adds a public path to a (a policy-only edit); `listen_port`
/// moves the listener (a listener edit).
fn policy_snapshot(public: Option<&str>, listen_port: u16, previous: Option<&Snapshot>) -> Snapshot {
    let public = public.map(|p| format!("\n    public_paths: [\"{p}\"]")).unwrap_or_default();
    let yaml = crate::test_support::AUTH.to_owned()
        + &format!("services:\n  - name: a\n    routes: [{{prefix: /a}}]{public}\n  - name: b\n    routes: [{{prefix: /b}}]\n");
    let options = crate::test_support::translate_options(listen_port);
    build_snapshot(&Registry::parse("r", &yaml).unwrap(), &crate::registry::LiveInstances::new(), &[], &options, previous).unwrap()
}

/// Subscribes to all five types as Envoy does (ECDS by the filter's name) and ACKs each.
fn subscribed_and_acked(snap: &Snapshot) -> SotwStream {
    let mut stream = SotwStream::default();
    for (t, names) in [
        (type_url::CLUSTER, vec![]),
        (type_url::ENDPOINT, vec!["svc_a", "svc_b"]),
        (type_url::LISTENER, vec![]),
        (type_url::EXTENSION_CONFIG, vec!["stagedoor"]),
        (type_url::ROUTE, vec!["stagedoor_routes"]),
    ] {
        let r = stream.on_request(&request(t, "", "", &names), snap).responses.remove(0);
        stream.on_request(&request(t, &r.nonce, &r.version_info, &names), snap);
    }
    stream
}

#[test]
fn a_policy_edit_goes_out_as_ecds_alone_and_the_listener_keeps_its_version() {
    let first = policy_snapshot(None, 8080, None);
    let mut stream = subscribed_and_acked(&first);
    let second = policy_snapshot(Some("/a/open"), 8080, Some(&first));
    assert_eq!(second.types[type_url::LISTENER].version, first.types[type_url::LISTENER].version);
    let step = stream.on_snapshot(&second);
    let types: Vec<_> = step.responses.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(types, [type_url::EXTENSION_CONFIG], "only the filter's config changed");
    assert_eq!(step.responses[0].resources.len(), 1);
}

#[test]
fn a_nacked_filter_config_is_recorded_and_not_resent_until_it_changes() {
    let first = policy_snapshot(None, 8080, None);
    let mut stream = subscribed_and_acked(&first);
    let second = policy_snapshot(Some("/a/open"), 8080, Some(&first));
    let sent = stream.on_snapshot(&second).responses.remove(0);
    let mut nack = request(type_url::EXTENSION_CONFIG, &sent.nonce, &first.types[type_url::EXTENSION_CONFIG].version, &["stagedoor"]);
    nack.error_detail = Some(RpcStatus { code: 3, message: "Unable to create Wasm HTTP filter".into(), details: vec![] });
    let step = stream.on_request(&nack, &second);
    assert!(matches!(&step.events[..], [StreamEvent::Nack { type_url: t, .. }] if t == type_url::EXTENSION_CONFIG));
    let kept = &step.responses[0];
    assert_eq!(kept.resources, [(*first.types[type_url::EXTENSION_CONFIG].resources["stagedoor"]).clone()], "the last good config, not the rejected one");
    stream.on_request(&request(type_url::EXTENSION_CONFIG, &kept.nonce, &kept.version_info, &["stagedoor"]), &second);
    assert!(stream.on_snapshot(&second).responses.is_empty(), "the rejected config is not resent");
    let third = policy_snapshot(Some("/a/other"), 8080, Some(&second));
    let types: Vec<_> = stream.on_snapshot(&third).responses.iter().map(|r| r.type_url.clone()).collect();
    assert_eq!(types, [type_url::EXTENSION_CONFIG], "a newer config is sent");
}

#[test]
fn a_filter_config_goes_out_before_the_listener_and_waits_for_clusters_like_it() {
    let first = policy_snapshot(None, 8080, None);
    let mut stream = subscribed_and_acked(&first);
    let second = policy_snapshot(Some("/a/open"), 8081, Some(&first));
    let step = stream.on_snapshot(&second);
    let types: Vec<_> = step.responses.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(types, [type_url::EXTENSION_CONFIG, type_url::LISTENER]);

    // A new service: its cluster must be ACKed (and its endpoints held) before ECDS goes.
    let yaml = crate::test_support::AUTH.to_owned()
        + "services:\n  - name: a\n    routes: [{prefix: /a}]\n  - name: b\n    routes: [{prefix: /b}]\n  - name: c\n    routes: [{prefix: /c}]\n";
    let options = crate::test_support::translate_options(8081);
    let third = build_snapshot(&Registry::parse("r", &yaml).unwrap(), &crate::registry::LiveInstances::new(), &[], &options, Some(&second)).unwrap();
    for r in &step.responses {
        let names: &[&str] = if r.type_url == type_url::EXTENSION_CONFIG { &["stagedoor"] } else { &[] };
        stream.on_request(&request(&r.type_url, &r.nonce, &r.version_info, names), &third);
    }
    let step = stream.on_snapshot(&third);
    let types: Vec<_> = step.responses.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(types, [type_url::CLUSTER, type_url::ENDPOINT], "filter config and routes wait: {types:?}");
    let cds = step.responses[0].clone();
    stream.on_request(&request(type_url::CLUSTER, &cds.nonce, &cds.version_info, &[]), &third);
    let names = ["svc_a", "svc_b", "svc_c"];
    let eds = stream.on_request(&request(type_url::ENDPOINT, "", "", &names), &third).responses.remove(0);
    let step = stream.on_request(&request(type_url::ENDPOINT, &eds.nonce, &eds.version_info, &names), &third);
    let types: Vec<_> = step.responses.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(types, [type_url::EXTENSION_CONFIG, type_url::ROUTE]);
}

fn edge_snapshot(certs: &crate::test_support::TestCerts, previous: Option<&Snapshot>) -> Snapshot {
    let (cert, key) = certs.leaf("a", &["a.test"], -1, 30);
    let yaml = crate::test_support::AUTH.to_owned() + &format!(
        "edge_tls:\n  port: 8443\n  certificates: [{{ server_names: [a.test], cert_file: {cert}, key_file: {key} }}]\nservices:\n  - name: a\n    routes: [{{prefix: /a}}]\n"
    );
    let options = crate::test_support::translate_options(8080);
    build_snapshot(&Registry::parse("r", &yaml).unwrap(), &crate::registry::LiveInstances::new(), &[], &options, previous).unwrap()
}

#[test]
fn a_rotated_certificate_goes_out_as_one_secret_at_once_and_nothing_else_changes() {
    let certs = crate::test_support::TestCerts::new("sotw-rotate");
    let first = edge_snapshot(&certs, None);
    let mut stream = subscribed_and_acked(&first);
    let step = stream.on_request(&request(type_url::SECRET, "", "", &["edge_cert_a.test"]), &first);
    assert_eq!(step.responses.len(), 1);
    assert_eq!(step.responses[0].resources.len(), 1);
    let nonce = step.responses[0].nonce.clone();
    stream.on_request(&request(type_url::SECRET, &nonce, &first.types[type_url::SECRET].version, &["edge_cert_a.test"]), &first);
    // The same files with a new certificate in them: only SDS has a new version.
    let rotated = edge_snapshot(&certs, Some(&first));
    let changed: Vec<_> = rotated.types.iter().filter(|(t, typed)| first.types[*t].version != typed.version).map(|(t, _)| *t).collect();
    assert_eq!(changed, vec![type_url::SECRET]);
    let step = stream.on_snapshot(&rotated);
    let sent: Vec<_> = step.responses.iter().map(|r| r.type_url.as_str()).collect();
    assert_eq!(sent, vec![type_url::SECRET]);
}

/// Services a and b; `lb` gives a a load-balancing policy (a cluster-only edit).
fn cluster_snapshot(lb: Option<&str>, previous: Option<&Snapshot>) -> Snapshot {
    let traffic = lb.map(|p| format!("\n    traffic: {{load_balancing: {{policy: {p}}}}}")).unwrap_or_default();
    let yaml = crate::test_support::AUTH.to_owned()
        + &format!("services:\n  - name: a\n    routes: [{{prefix: /a}}]{traffic}\n  - name: b\n    routes: [{{prefix: /b}}]\n");
    let options = crate::test_support::translate_options(8080);
    build_snapshot(&Registry::parse("r", &yaml).unwrap(), &crate::registry::LiveInstances::new(), &[], &options, previous).unwrap()
}

#[test]
fn a_changed_cluster_gets_its_endpoints_again_while_it_warms_once_per_cds_response() {
    let first = cluster_snapshot(None, None);
    let mut stream = subscribed_and_acked(&first);
    let second = cluster_snapshot(Some("random"), Some(&first));
    assert_eq!(second.types[type_url::ENDPOINT].version, first.types[type_url::ENDPOINT].version, "only the cluster changed");
    let cds = stream.on_snapshot(&second).responses.remove(0);
    assert_eq!(cds.type_url, type_url::CLUSTER);
    // Envoy warms the changed cluster and asks for its endpoints, naming what it has: on
    // the wire a plain EDS ACK. Unanswered, the cluster warms until Envoy's fetch timeout
    // and the CDS ACK waits with it.
    let eds_version = first.types[type_url::ENDPOINT].version.clone();
    let eds = stream.types[type_url::ENDPOINT].sent_nonce.clone().unwrap();
    let step = stream.on_request(&request(type_url::ENDPOINT, &eds, &eds_version, &["svc_a", "svc_b"]), &second);
    assert_eq!(step.responses.len(), 1, "the warming cluster gets its endpoints");
    let again = &step.responses[0];
    assert_eq!((again.type_url.as_str(), names_in(again)), (type_url::ENDPOINT, vec!["svc_a".to_owned()]), "only the re-created cluster's");
    // The ACK of that answer is not answered again while CDS is still unanswered.
    let step = stream.on_request(&request(type_url::ENDPOINT, &again.nonce, &eds_version, &["svc_a", "svc_b"]), &second);
    assert!(step.responses.is_empty(), "once per CDS response, no loop");
    // Once CDS is ACKed, a plain EDS ACK is a plain ACK again.
    stream.on_request(&request(type_url::CLUSTER, &cds.nonce, &cds.version_info, &[]), &second);
    let step = stream.on_request(&request(type_url::ENDPOINT, &again.nonce, &eds_version, &["svc_a", "svc_b"]), &second);
    assert!(step.responses.is_empty());
}

/// Services a and b with optional load-balancing policies (cluster edits) and extra route
/// prefixes for b (a route edit).
fn two_services(a_lb: Option<&str>, b_lb: Option<&str>, b_prefix: &str, previous: Option<&Snapshot>) -> Snapshot {
    let traffic = |lb: Option<&str>| lb.map(|p| format!("\n    traffic: {{load_balancing: {{policy: {p}}}}}")).unwrap_or_default();
    let yaml = crate::test_support::AUTH.to_owned()
        + &format!(
            "services:\n  - name: a\n    routes: [{{prefix: /a}}]{}\n  - name: b\n    routes: [{{prefix: {b_prefix}}}]{}\n",
            traffic(a_lb),
            traffic(b_lb)
        );
    let options = crate::test_support::translate_options(8080);
    build_snapshot(&Registry::parse("r", &yaml).unwrap(), &crate::registry::LiveInstances::new(), &[], &options, previous).unwrap()
}

fn nack_of(r: &DiscoveryResponse, version: &str, names: &[&str], detail: &str) -> DiscoveryRequest {
    let mut nack = request(&r.type_url, &r.nonce, version, names);
    nack.error_detail = Some(RpcStatus { code: 13, message: detail.into(), details: vec![] });
    nack
}

fn cluster_named<'a>(r: &'a DiscoveryResponse, name: &str) -> Option<&'a envoy_types::pb::google::protobuf::Any> {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use prost::Message;
    r.resources.iter().find(|any| Cluster::decode(any.value.as_slice()).is_ok_and(|c| c.name == name))
}

/// ACKs every response of `step` (and what those ACKs bring) with the names this stream
/// subscribes to, as a healthy Envoy does; what was sent.
fn ack_all(stream: &mut SotwStream, snap: &Snapshot, mut pending: Vec<DiscoveryResponse>) -> Vec<DiscoveryResponse> {
    let names = |t: &str| -> Vec<&str> {
        match t {
            t if t == type_url::ENDPOINT => vec!["svc_a", "svc_b"],
            t if t == type_url::EXTENSION_CONFIG => vec!["stagedoor"],
            t if t == type_url::ROUTE => vec!["stagedoor_routes"],
            _ => vec![],
        }
    };
    let mut seen = Vec::new();
    for _ in 0..32 {
        let Some(r) = pending.pop() else { break };
        pending.extend(stream.on_request(&request(&r.type_url, &r.nonce, &r.version_info, &names(&r.type_url)), snap).responses);
        seen.push(r);
    }
    seen
}

#[test]
fn a_refused_cluster_keeps_its_last_good_content_while_the_rest_of_its_type_goes_on() {
    let first = two_services(None, None, "/b", None);
    let mut stream = subscribed_and_acked(&first);
    let mut other_node = subscribed_and_acked(&first);
    let good_a = first.types[type_url::CLUSTER].resources["svc_a"].clone();

    // a's cluster changes; this Envoy refuses it, naming it.
    let second = two_services(Some("random"), None, "/b", Some(&first));
    let cds = stream.on_snapshot(&second).responses.remove(0);
    let detail = "Error adding/updating cluster(s) svc_a: no such policy";
    let step = stream.on_request(&nack_of(&cds, &first.types[type_url::CLUSTER].version, &[], detail), &second);
    assert!(matches!(&step.events[..], [StreamEvent::Nack { .. }]), "{:?}", step.events);
    assert_eq!(step.responses.len(), 1, "the rest of the type goes again at once");
    let kept = &step.responses[0];
    assert_eq!(cluster_named(kept, "svc_a"), Some(&*good_a), "the refused cluster at its last good content");
    assert!(cluster_named(kept, "svc_b").is_some());
    assert_ne!(kept.version_info, second.types[type_url::CLUSTER].version, "not the snapshot's version: Envoy does not run it");
    let step = stream.on_request(&request(type_url::CLUSTER, &kept.nonce, &kept.version_info, &[]), &second);
    assert!(
        matches!(&step.events[..], [StreamEvent::Ack { quarantined, .. }] if quarantined == &["svc_a"]),
        "the ACK says svc_a is still quarantined: {:?}",
        step.events
    );
    assert!(stream.on_snapshot(&second).responses.is_empty(), "nothing re-sent until the registry changes");

    // b's cluster and routes change: they reach this Envoy, a stays at its good content.
    let third = two_services(Some("random"), Some("least_request"), "/b2", Some(&second));
    let step = stream.on_snapshot(&third);
    let cds = step.responses.iter().find(|r| r.type_url == type_url::CLUSTER).unwrap().clone();
    assert_eq!(cluster_named(&cds, "svc_a"), Some(&*good_a));
    assert_eq!(cluster_named(&cds, "svc_b"), Some(&*third.types[type_url::CLUSTER].resources["svc_b"]));
    let sent = ack_all(&mut stream, &third, step.responses);
    let routes = sent.iter().find(|r| r.type_url == type_url::ROUTE).expect("b's routes go once the clusters are ACKed");
    assert_eq!(routes.version_info, third.types[type_url::ROUTE].version);

    // The other node was never refused anything: it gets the snapshot as it is.
    let theirs = other_node.on_snapshot(&third).responses.remove(0);
    assert_eq!(theirs.version_info, third.types[type_url::CLUSTER].version);
    assert_eq!(cluster_named(&theirs, "svc_a"), Some(&*third.types[type_url::CLUSTER].resources["svc_a"]));

    // a changes again, and this Envoy takes it: the quarantine is over.
    let fourth = two_services(Some("least_request"), Some("least_request"), "/b2", Some(&third));
    let cds = stream.on_snapshot(&fourth).responses.remove(0);
    assert_eq!(cluster_named(&cds, "svc_a"), Some(&*fourth.types[type_url::CLUSTER].resources["svc_a"]), "tried again");
    assert_eq!(cds.version_info, fourth.types[type_url::CLUSTER].version);
    let step = stream.on_request(&request(type_url::CLUSTER, &cds.nonce, &cds.version_info, &[]), &fourth);
    assert!(matches!(&step.events[..], [StreamEvent::Ack { quarantined, .. }] if quarantined.is_empty()), "{:?}", step.events);
}

#[test]
fn a_refused_new_cluster_is_left_out_and_a_nack_refusing_nothing_new_is_not_answered() {
    let first = two_services(None, None, "/b", None);
    let mut stream = subscribed_and_acked(&first);
    let yaml = crate::test_support::AUTH.to_owned()
        + "services:\n  - name: a\n    routes: [{prefix: /a}]\n  - name: b\n    routes: [{prefix: /b}]\n  - name: c\n    routes: [{prefix: /c}]\n";
    let options = crate::test_support::translate_options(8080);
    let second = build_snapshot(&Registry::parse("r", &yaml).unwrap(), &crate::registry::LiveInstances::new(), &[], &options, Some(&first)).unwrap();
    let cds = stream.on_snapshot(&second).responses.remove(0);
    let step = stream.on_request(&nack_of(&cds, "", &[], "cluster svc_c: refused"), &second);
    let kept = &step.responses[0];
    assert!(cluster_named(kept, "svc_c").is_none(), "never held a good one: left out");
    assert_eq!(kept.resources.len(), cds.resources.len() - 1);
    // The same refusal of the reply quarantines nothing new: no answer (no loop).
    let step = stream.on_request(&nack_of(kept, "", &[], "cluster svc_c: refused"), &second);
    assert!(step.responses.is_empty(), "{:?}", step.responses);
}

#[test]
fn a_nack_naming_no_resource_quarantines_what_changed_and_keeps_the_rest() {
    let first = two_services(None, None, "/b", None);
    let mut stream = subscribed_and_acked(&first);
    let second = two_services(Some("random"), None, "/b", Some(&first));
    let cds = stream.on_snapshot(&second).responses.remove(0);
    let step = stream.on_request(&nack_of(&cds, "", &[], "Unable to parse"), &second);
    let kept = &step.responses[0];
    assert_eq!(cluster_named(kept, "svc_a"), Some(&*first.types[type_url::CLUSTER].resources["svc_a"]), "what changed is what it refused");
    let step = stream.on_request(&request(type_url::CLUSTER, &kept.nonce, &kept.version_info, &[]), &second);
    assert!(matches!(&step.events[..], [StreamEvent::Ack { quarantined, .. }] if quarantined == &["svc_a"]), "only svc_a: {:?}", step.events);
}

/// Services a (one instance on `port_a`, load balancing `lb`) and b (one on `port_b`).
fn two_service_snapshot(port_a: u16, port_b: u16, lb: Option<&str>, previous: Option<&Snapshot>) -> Snapshot {
    let traffic = lb.map(|p| format!("\n    traffic: {{load_balancing: {{policy: {p}}}}}")).unwrap_or_default();
    let yaml = crate::test_support::AUTH.to_owned() + &format!(
        "services:\n  - name: a\n    routes: [{{prefix: /a}}]\n    instances: [{{address: 127.0.0.1, port: {port_a}}}]{traffic}\n  - name: b\n    routes: [{{prefix: /b}}]\n    instances: [{{address: 127.0.0.1, port: {port_b}}}]\n"
    );
    let options = crate::test_support::translate_options(8080);
    build_snapshot(&Registry::parse("r", &yaml).unwrap(), &crate::registry::LiveInstances::new(), &[], &options, previous).unwrap()
}

/// ACKs every response of `step` as Envoy would (same names as subscribed).
fn ack_step(stream: &mut SotwStream, step: &SotwStep, snap: &Snapshot) -> Vec<DiscoveryResponse> {
    let mut more = Vec::new();
    for r in &step.responses {
        let names: Vec<&str> = match r.type_url.as_str() {
            type_url::ENDPOINT => vec!["svc_a", "svc_b"],
            type_url::EXTENSION_CONFIG => vec!["stagedoor"],
            type_url::ROUTE => vec!["stagedoor_routes"],
            _ => vec![],
        };
        more.extend(stream.on_request(&request(&r.type_url, &r.nonce, &r.version_info, &names), snap).responses);
    }
    more
}

#[test]
fn an_instance_change_sends_only_the_changed_assignment_and_routes_still_follow() {
    let first = two_service_snapshot(1, 2, None, None);
    let mut stream = subscribed_and_acked(&first);
    let second = two_service_snapshot(1, 3, None, Some(&first));
    let step = stream.on_snapshot(&second);
    assert_eq!(step.responses.len(), 1);
    assert_eq!(names_in(&step.responses[0]), ["svc_b"], "a's assignment is unchanged: Envoy keeps it");
    assert!(!stream.clusters_ready(&second), "not before the ACK");
    ack_step(&mut stream, &step, &second);
    assert!(stream.clusters_ready(&second), "Envoy holds every assignment: a from before, b now");
    // A later policy edit is not held back by the partial EDS.
    let yaml = crate::test_support::AUTH.to_owned()
        + "services:\n  - name: a\n    routes: [{prefix: /a}]\n    instances: [{address: 127.0.0.1, port: 1}]\n    public_paths: [\"/a/open\"]\n  - name: b\n    routes: [{prefix: /b}]\n    instances: [{address: 127.0.0.1, port: 3}]\n";
    let options = crate::test_support::translate_options(8080);
    let third = build_snapshot(&Registry::parse("r", &yaml).unwrap(), &crate::registry::LiveInstances::new(), &[], &options, Some(&second)).unwrap();
    let types: Vec<_> = stream.on_snapshot(&third).responses.iter().map(|r| r.type_url.clone()).collect();
    assert_eq!(types, [type_url::EXTENSION_CONFIG]);
}

#[test]
fn a_nacked_assignment_goes_again_with_the_next_change_not_before() {
    let first = two_service_snapshot(1, 2, None, None);
    let mut stream = subscribed_and_acked(&first);
    let second = two_service_snapshot(4, 2, None, Some(&first));
    let sent = stream.on_snapshot(&second).responses.remove(0);
    assert_eq!(names_in(&sent), ["svc_a"]);
    let mut nack = request(type_url::ENDPOINT, &sent.nonce, &first.types[type_url::ENDPOINT].version, &["svc_a", "svc_b"]);
    nack.error_detail = Some(RpcStatus { code: 3, message: "bad endpoint".into(), details: vec![] });
    let step = stream.on_request(&nack, &second);
    assert!(matches!(&step.events[..], [StreamEvent::Nack { resources, .. }] if resources == &["svc_a".to_owned()]));
    assert!(stream.on_snapshot(&second).responses.is_empty(), "the rejected version is not resent");
    assert!(!stream.clusters_ready(&second), "a NACKed assignment is not held");
    let third = two_service_snapshot(4, 5, None, Some(&second));
    let again = stream.on_snapshot(&third).responses.remove(0);
    assert_eq!(names_in(&again), ["svc_a", "svc_b"], "the changed one and the one a NACK left unsettled");
}

#[test]
fn a_cluster_and_an_instance_change_together_send_the_recreated_clusters_endpoints_at_once() {
    let first = two_service_snapshot(1, 2, None, None);
    let mut stream = subscribed_and_acked(&first);
    // a's cluster changes (Envoy re-creates it: it warms), b's instance changes.
    let second = two_service_snapshot(1, 3, Some("random"), Some(&first));
    let step = stream.on_snapshot(&second);
    let sent: Vec<_> = step.responses.iter().map(|r| (r.type_url.as_str(), names_in(r))).collect();
    assert_eq!(
        sent,
        [(type_url::CLUSTER, vec!["svc_a".to_owned(), "svc_b".to_owned()]), (type_url::ENDPOINT, vec!["svc_a".to_owned(), "svc_b".to_owned()])],
        "CDS is whole; EDS carries the warming cluster's and the changed one's"
    );
    ack_step(&mut stream, &step, &second);
    let third = two_service_snapshot(1, 6, Some("random"), Some(&second));
    let step = stream.on_snapshot(&third);
    assert_eq!(names_in(&step.responses[0]), ["svc_b"], "once CDS is ACKed, a warmed cluster is not re-sent");
}

#[test]
fn a_reconnecting_envoy_gets_every_assignment() {
    let first = two_service_snapshot(1, 2, None, None);
    subscribed_and_acked(&first);
    let mut fresh = SotwStream::default();
    let step = fresh.on_request(&request(type_url::ENDPOINT, "", "", &["svc_a", "svc_b"]), &first);
    assert_eq!(names_in(&step.responses[0]), ["svc_a", "svc_b"], "a new stream holds nothing");
}
