use envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher;

use super::*;
use crate::xds::ledger::{Ledger, Nack, RegistryEntry, RejectedResource};

fn snapshot() -> Snapshot {
    let yaml = crate::test_support::registry_yaml(
        "services:
  - name: venue
    routes: [{prefix: /api/v1/venues}]
    instances: [{address: 127.0.0.1, port: 9000}]
",
    );
    let registry = crate::registry::Registry::parse("test", &yaml).expect("valid registry");
    crate::publish::build_snapshot(&registry, &Default::default(), &[], &crate::test_support::translate_options(8080), None)
        .expect("a snapshot")
}

fn cds_of<'a>(response: &'a ClientStatusResponse, node: &str, name: &str) -> &'a GenericXdsConfig {
    let config = response.config.iter().find(|c| c.node.as_ref().is_some_and(|n| n.id == node)).expect("the node");
    config.generic_xds_configs.iter().find(|g| g.type_url == type_url::CLUSTER && g.name == name).expect("the cluster")
}

#[test]
fn a_nacked_resource_is_an_error_with_envoys_detail_and_the_other_node_is_synced() {
    let snap = snapshot();
    let cds_version = snap.types[type_url::CLUSTER].version.clone();
    let mut ledger = Ledger::default();
    for (id, node) in [(1, "gw-bad"), (2, "gw-good"), (3, "gw-new")] {
        ledger.connect(id, node, "gateway", "sotw", 0);
    }
    for id in [1, 2] {
        ledger.sent(id, "CDS", &cds_version, "1", 1, 0);
    }
    ledger.ack(2, "CDS", &cds_version, "1", &[], 5);
    let entry = RegistryEntry { service: Some("venue".into()), route: None, field: "traffic".into() };
    let nack = Nack {
        version: cds_version.clone(),
        nonce: "1".into(),
        detail: "cluster svc_venue: refused".into(),
        at_unix_ms: 5,
        resources: vec![RejectedResource { name: "svc_venue".into(), entry: Some(entry), named_in_detail: true }],
    };
    ledger.nack(1, "CDS", nack, 5);
    let response = client_status(&ClientStatusRequest::default(), &ledger.nodes(), &snap);
    assert_eq!(response.config.len(), 3);

    let bad = cds_of(&response, "gw-bad", "svc_venue");
    assert_eq!(bad.config_status, ConfigStatus::Error as i32);
    assert_eq!(bad.client_status, ClientResourceStatus::Nacked as i32);
    let error = bad.error_state.as_ref().expect("the error state");
    assert_eq!(error.details, "cluster svc_venue: refused", "Envoy's words, verbatim");
    assert_eq!(error.version_info, cds_version);

    let good = cds_of(&response, "gw-good", "svc_venue");
    assert_eq!(good.config_status, ConfigStatus::Synced as i32);
    assert_eq!(good.client_status, ClientResourceStatus::Acked as i32);
    assert_eq!(good.version_info, cds_version);
    assert!(good.xds_config.is_some(), "the content Envoy ACKed");

    let new = cds_of(&response, "gw-new", "svc_venue");
    assert_eq!(new.config_status, ConfigStatus::NotSent as i32);

    let excluded = client_status(&ClientStatusRequest { exclude_resource_contents: true, ..Default::default() }, &ledger.nodes(), &snap);
    assert!(cds_of(&excluded, "gw-good", "svc_venue").xds_config.is_none());
}

#[test]
fn node_matchers_pick_nodes_and_closed_streams_are_left_out() {
    let snap = snapshot();
    let mut ledger = Ledger::default();
    ledger.connect(1, "gw-a", "gateway", "sotw", 0);
    ledger.connect(2, "gw-b", "gateway", "sotw", 0);
    ledger.connect(3, "other", "gateway", "sotw", 0);
    ledger.disconnect(3, 1);
    let matcher = |pattern| NodeMatcher { node_id: Some(StringMatcher { match_pattern: Some(pattern), ..Default::default() }), ..Default::default() };
    let ids = |request: ClientStatusRequest| -> Vec<String> {
        client_status(&request, &ledger.nodes(), &snap).config.iter().filter_map(|c| c.node.as_ref().map(|n| n.id.clone())).collect()
    };
    assert_eq!(ids(ClientStatusRequest::default()), ["gw-a", "gw-b"]);
    assert_eq!(ids(ClientStatusRequest { node_matchers: vec![matcher(MatchPattern::Exact("gw-b".into()))], ..Default::default() }), ["gw-b"]);
    assert_eq!(ids(ClientStatusRequest { node_matchers: vec![matcher(MatchPattern::Prefix("gw-".into()))], ..Default::default() }), ["gw-a", "gw-b"]);
    let by_node = ClientStatusRequest { node: Some(Node { id: "gw-a".into(), ..Default::default() }), ..Default::default() };
    assert_eq!(ids(by_node), ["gw-a"]);
}
