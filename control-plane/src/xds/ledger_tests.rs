use super::*;

fn nack(version: &str, nonce: &str, detail: &str) -> Nack {
    Nack {
        version: version.into(),
        nonce: nonce.into(),
        detail: detail.into(),
        at_unix_ms: 0,
        resources: vec![RejectedResource {
            name: "svc_venue".into(),
            entry: Some(RegistryEntry { service: Some("venue".into()), route: None, field: "traffic.load_balancing".into() }),
            named_in_detail: true,
        }],
    }
}

fn connected() -> Ledger {
    let mut ledger = Ledger::default();
    ledger.connect(1, "gw-1", "gateway", "sotw", 1_000);
    ledger
}

fn node(ledger: &Ledger, stream_id: u64) -> NodeRecord {
    ledger.nodes().into_iter().find(|n| n.stream_id == stream_id).expect("the stream is in the ledger")
}

#[test]
fn a_type_goes_not_sent_then_pending_then_synced_and_the_ack_is_timed() {
    let mut ledger = connected();
    assert_eq!(node(&ledger, 1).state_of("CDS"), SyncState::NotSent);
    assert_eq!(node(&ledger, 1).overall(), SyncState::NotSent);
    ledger.sent(1, "CDS", "v1", "1", 3, 1_100);
    let n = node(&ledger, 1);
    assert_eq!(n.state_of("CDS"), SyncState::Pending);
    assert_eq!(n.types["CDS"].pending_age_ms(1_150), Some(50));
    let acked = ledger.ack(1, "CDS", "v1", "1", &[], 1_130);
    assert_eq!(acked, Some(Acked { type_name: "CDS".into(), push_to_ack_ms: 30 }));
    let n = node(&ledger, 1);
    assert_eq!(n.state_of("CDS"), SyncState::Synced);
    assert_eq!(n.overall(), SyncState::Synced);
    assert_eq!(n.types["CDS"].acked_version.as_deref(), Some("v1"));
    assert_eq!(n.types["CDS"].last_push_ack_ms, Some(30));
    assert_eq!(n.types["CDS"].pending_age_ms(2_000), None);
    assert_eq!(n.history[0].outcome, Outcome::Acked);
    assert_eq!(n.history[0].answered_after_ms, Some(30));
}

#[test]
fn a_nack_stays_in_force_until_a_later_ack_of_the_type() {
    let mut ledger = connected();
    ledger.sent(1, "CDS", "v1", "1", 1, 1_000);
    ledger.ack(1, "CDS", "v1", "1", &[], 1_010);
    ledger.sent(1, "CDS", "v2", "2", 1, 2_000);
    ledger.nack(1, "CDS", nack("v2", "2", "Didn't find a registered load balancer"), 2_020);
    let n = node(&ledger, 1);
    assert_eq!(n.state_of("CDS"), SyncState::Nacked);
    assert_eq!(n.overall(), SyncState::Nacked);
    let rejected = n.types["CDS"].rejected.clone().expect("the NACK is in force");
    assert_eq!(rejected.detail, "Didn't find a registered load balancer", "Envoy's words, verbatim");
    assert_eq!(rejected.resources[0].entry.as_ref().and_then(|e| e.service.as_deref()), Some("venue"));
    assert_eq!(n.types["CDS"].acked_version.as_deref(), Some("v1"), "Envoy keeps its last good version");
    assert_eq!(n.history[1].outcome, Outcome::Nacked);

    // The next registry change goes out: pending, the rejection still on record.
    ledger.sent(1, "CDS", "v3", "3", 1, 3_000);
    let n = node(&ledger, 1);
    assert_eq!(n.state_of("CDS"), SyncState::Pending);
    assert!(n.types["CDS"].rejected.is_some());
    ledger.ack(1, "CDS", "v3", "3", &[], 3_040);
    let n = node(&ledger, 1);
    assert_eq!(n.state_of("CDS"), SyncState::Synced);
    assert!(n.types["CDS"].rejected.is_none(), "a later ACK clears it");
    assert_eq!(n.types["CDS"].last_nack.as_ref().map(|x| x.version.as_str()), Some("v2"), "the last NACK stays on record");
}

#[test]
fn an_ack_of_a_later_response_settles_the_earlier_ones() {
    let mut ledger = connected();
    ledger.sent(1, "EDS", "v1", "1", 1, 1_000);
    ledger.sent(1, "EDS", "v2", "2", 1, 1_100);
    ledger.ack(1, "EDS", "v2", "2", &[], 1_150);
    let n = node(&ledger, 1);
    assert_eq!(n.state_of("EDS"), SyncState::Synced, "SotW answers only the latest nonce");
    assert_eq!(n.types["EDS"].last_push_ack_ms, Some(50));
    assert_eq!([n.history[0].outcome, n.history[1].outcome], [Outcome::Superseded, Outcome::Acked]);
}

#[test]
fn delta_answers_each_response_in_order() {
    let mut ledger = Ledger::default();
    ledger.connect(1, "gw-1", "gateway", "delta", 0);
    ledger.sent(1, "EDS", "v1", "1", 1, 100);
    ledger.sent(1, "EDS", "v2", "2", 1, 200);
    ledger.ack(1, "EDS", "v1", "1", &[], 210);
    assert_eq!(node(&ledger, 1).state_of("EDS"), SyncState::Pending, "the second response is still unanswered");
    assert_eq!(node(&ledger, 1).types["EDS"].pending_age_ms(300), Some(100));
    ledger.ack(1, "EDS", "v2", "2", &[], 230);
    assert_eq!(node(&ledger, 1).state_of("EDS"), SyncState::Synced);
}

#[test]
fn an_unknown_nonce_changes_nothing_pending() {
    let mut ledger = connected();
    ledger.sent(1, "LDS", "v1", "7", 1, 0);
    assert_eq!(ledger.ack(1, "LDS", "v0", "6", &[], 10), None, "no push to time");
    assert_eq!(node(&ledger, 1).state_of("LDS"), SyncState::Pending);
}

#[test]
fn a_closed_stream_shows_disconnected_until_the_node_returns() {
    let mut ledger = connected();
    ledger.sent(1, "CDS", "v1", "1", 1, 0);
    ledger.ack(1, "CDS", "v1", "1", &[], 5);
    ledger.disconnect(1, 100);
    let n = node(&ledger, 1);
    assert_eq!(n.state_of("CDS"), SyncState::Disconnected);
    assert_eq!(n.overall(), SyncState::Disconnected);
    assert_eq!(n.disconnected_at_unix_ms, Some(100));
    ledger.connect(2, "gw-1", "gateway", "sotw", 200);
    let nodes = ledger.nodes();
    assert_eq!(nodes.len(), 1, "the new stream replaces the closed one: {nodes:?}");
    assert_eq!(nodes[0].stream_id, 2);
}

#[test]
fn closed_streams_and_history_are_bounded() {
    let mut ledger = Ledger::default();
    for id in 0..(DISCONNECTED_KEPT as u64 + 10) {
        ledger.connect(id, &format!("gw-{id}"), "gateway", "sotw", id);
        ledger.disconnect(id, id);
    }
    let nodes = ledger.nodes();
    assert_eq!(nodes.len(), DISCONNECTED_KEPT);
    assert_eq!(nodes.iter().map(|n| n.stream_id).min(), Some(10), "the oldest closed ones go first");

    let mut ledger = connected();
    for i in 0..(HISTORY_PER_NODE as u64 * 2) {
        ledger.sent(1, "EDS", &format!("v{i}"), &i.to_string(), 1, i);
    }
    let n = node(&ledger, 1);
    assert_eq!(n.history.len(), HISTORY_PER_NODE);
    assert_eq!(n.history.back().map(|p| p.version.clone()), Some(format!("v{}", HISTORY_PER_NODE * 2 - 1)));
    assert!(n.types["EDS"].pending_age_ms(1_000).is_some());
}

#[test]
fn one_node_nacking_leaves_the_other_synced() {
    let mut ledger = connected();
    ledger.connect(2, "gw-2", "gateway", "sotw", 0);
    for id in [1, 2] {
        ledger.sent(id, "CDS", "v2", "1", 1, 0);
    }
    ledger.nack(1, "CDS", nack("v2", "1", "refused"), 10);
    ledger.ack(2, "CDS", "v2", "1", &[], 10);
    assert_eq!(node(&ledger, 1).overall(), SyncState::Nacked);
    assert_eq!(node(&ledger, 2).overall(), SyncState::Synced);
}

#[test]
fn states_serialize_as_operators_read_them() {
    let names: Vec<String> = SyncState::ALL.iter().map(|s| serde_json::to_value(s).unwrap().as_str().unwrap().to_owned()).collect();
    let as_str: Vec<&str> = SyncState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(names, as_str);
    assert_eq!(as_str, ["SYNCED", "PENDING", "NACKED", "NOT_SENT", "DISCONNECTED"]);
}

#[test]
fn the_refused_resources_are_those_envoy_names() {
    let detail = "Error adding/updating cluster(s) svc_venue: No load balancer factory found for LB type: MAGLEV";
    assert!(names_resource(detail, "svc_venue"));
    assert!(!names_resource(detail, "svc_ven"), "a prefix of a name is not the name");
    assert!(!names_resource(detail, "stagedoor_control_plane"));
    assert!(names_resource("svc_a, svc_b: bad", "svc_b"));
    assert!(!names_resource("svc_venue_2: bad", "svc_venue"));
    let resource = |name: &str, named_in_detail| RejectedResource { name: name.into(), entry: None, named_in_detail };
    let mut n = nack("v", "1", detail);
    n.resources = vec![resource("stagedoor_control_plane", false), resource("svc_venue", true)];
    assert_eq!(n.refused().iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["svc_venue"]);
    n.resources = vec![resource("a", false), resource("b", false)];
    assert_eq!(n.refused().len(), 2, "none named: every resource the response carried");
}

#[test]
fn a_type_the_snapshot_has_and_the_stream_was_not_sent_keeps_the_node_pending() {
    let mut ledger = connected();
    ledger.offered(1, "s1", &["CDS", "EDS", "LDS"]);
    ledger.sent(1, "CDS", "v1", "1", 1, 0);
    ledger.ack(1, "CDS", "v1", "1", &[], 5);
    let n = node(&ledger, 1);
    assert_eq!(n.state_of("EDS"), SyncState::NotSent);
    assert_eq!(n.overall(), SyncState::Pending, "between its CDS ACK and its first EDS request a new Envoy is not synced");
    for (t, nonce) in [("EDS", "2"), ("LDS", "3")] {
        ledger.sent(1, t, "v1", nonce, 1, 10);
        ledger.ack(1, t, "v1", nonce, &[], 15);
    }
    assert_eq!(node(&ledger, 1).overall(), SyncState::Synced);
}

#[test]
fn an_ack_keeps_the_nack_in_force_for_the_resources_still_quarantined() {
    let mut ledger = connected();
    ledger.sent(1, "CDS", "v2", "1", 2, 1_000);
    let mut refused = nack("v2", "1", "Error adding/updating cluster(s) svc_venue: no maglev");
    refused.resources.push(RejectedResource { name: "svc_plain".into(), entry: None, named_in_detail: false });
    ledger.nack(1, "CDS", refused, 1_010);
    // The reply (svc_venue at its last good content) is ACKed; svc_venue stays quarantined.
    ledger.sent(1, "CDS", "v2-quarantine-1", "2", 2, 1_020);
    ledger.ack(1, "CDS", "v2-quarantine-1", "2", &["svc_venue".to_owned()], 1_030);
    let n = node(&ledger, 1);
    assert_eq!(n.state_of("CDS"), SyncState::Nacked, "not running what the registry says");
    let rejected = n.types["CDS"].rejected.clone().expect("still in force");
    let names: Vec<&str> = rejected.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["svc_venue"], "narrowed to the quarantined resource");
    assert_eq!(rejected.detail, "Error adding/updating cluster(s) svc_venue: no maglev");
    // Another service's change is ACKed: still in force.
    ledger.sent(1, "CDS", "v3-quarantine-1", "3", 2, 2_000);
    ledger.ack(1, "CDS", "v3-quarantine-1", "3", &["svc_venue".to_owned()], 2_010);
    assert_eq!(node(&ledger, 1).state_of("CDS"), SyncState::Nacked);
    // Its own change is ACKed: over.
    ledger.sent(1, "CDS", "v4", "4", 2, 3_000);
    ledger.ack(1, "CDS", "v4", "4", &[], 3_010);
    let n = node(&ledger, 1);
    assert_eq!(n.state_of("CDS"), SyncState::Synced);
    assert!(n.types["CDS"].rejected.is_none());
}

#[test]
fn a_later_nack_refusing_another_resource_keeps_the_earlier_one_in_force_beside_it() {
    let mut ledger = connected();
    ledger.sent(1, "CDS", "v2", "1", 2, 1_000);
    ledger.nack(1, "CDS", nack("v2", "1", "Error adding/updating cluster(s) svc_venue: no maglev"), 1_010);
    ledger.sent(1, "CDS", "v2-quarantine-1", "2", 2, 1_020);
    ledger.ack(1, "CDS", "v2-quarantine-1", "2", &["svc_venue".to_owned()], 1_030);
    ledger.sent(1, "CDS", "v3-quarantine-1", "3", 2, 2_000);
    let mut seats = nack("v3-quarantine-1", "3", "Error adding/updating cluster(s) svc_seats: bad");
    seats.resources = vec![
        RejectedResource { name: "svc_venue".into(), entry: None, named_in_detail: false },
        RejectedResource { name: "svc_seats".into(), entry: None, named_in_detail: true },
    ];
    ledger.nack(1, "CDS", seats, 2_010);
    let record = node(&ledger, 1).types["CDS"].clone();
    assert_eq!(record.rejected.as_ref().map(|n| n.detail.as_str()), Some("Error adding/updating cluster(s) svc_seats: bad"));
    let earlier: Vec<&str> = record.earlier_rejected.iter().flat_map(|n| n.resources.iter().map(|r| r.name.as_str())).collect();
    assert_eq!(earlier, ["svc_venue"], "venue's refusal stays in force with its own message");
    assert_eq!(record.refusal_of("svc_venue").map(|n| n.detail.as_str()), Some("Error adding/updating cluster(s) svc_venue: no maglev"));
    // seats is fixed, venue is not: only venue's NACK stays.
    ledger.sent(1, "CDS", "v4-quarantine-1", "4", 2, 3_000);
    ledger.ack(1, "CDS", "v4-quarantine-1", "4", &["svc_venue".to_owned()], 3_010);
    let n = node(&ledger, 1);
    assert_eq!(n.state_of("CDS"), SyncState::Nacked);
    assert!(n.types["CDS"].rejected.is_none() && n.types["CDS"].refusal_of("svc_venue").is_some());
    ledger.sent(1, "CDS", "v5", "5", 2, 4_000);
    ledger.ack(1, "CDS", "v5", "5", &[], 4_010);
    assert_eq!(node(&ledger, 1).state_of("CDS"), SyncState::Synced);
}
