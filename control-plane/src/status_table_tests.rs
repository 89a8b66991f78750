use super::*;
use stagedoor_proto::v1::RejectedResource;

fn typed(name: &str, state: &str, rejected: Option<Nack>) -> TypeStatus {
    TypeStatus { r#type: name.into(), state: state.into(), rejected, ..Default::default() }
}

fn envoy(node: &str, snapshot: &str, state: &str, types: Vec<TypeStatus>) -> EnvoyStatus {
    EnvoyStatus {
        node_id: node.into(),
        node_cluster: "gateway".into(),
        protocol: "sotw".into(),
        connected: true,
        state: state.into(),
        snapshot_version: snapshot.into(),
        types,
        ..Default::default()
    }
}

fn lb_nack() -> Nack {
    Nack {
        version: "v2".into(),
        nonce: "4".into(),
        detail: "Error adding/updating cluster(s) svc_venue: no load balancer".into(),
        at_unix_ms: 1,
        resources: vec![
            RejectedResource { name: "stagedoor_control_plane".into(), ..Default::default() },
            RejectedResource {
                name: "svc_venue".into(),
                service: "venue".into(),
                route: String::new(),
                field: "traffic.load_balancing".into(),
                named_in_detail: true,
            },
        ],
    }
}

fn reply(envoys: Vec<EnvoyStatus>) -> ListEnvoysResponse {
    ListEnvoysResponse { snapshot_version: "s2".into(), envoys, rbac_shadow: Vec::new() }
}

#[test]
fn the_table_has_a_column_per_type_and_the_nack_reason_of_that_node_only() {
    let r = reply(vec![
        envoy("gw-bad", "s2", "NACKED", vec![typed("CDS", "NACKED", Some(lb_nack())), typed("EDS", "SYNCED", None)]),
        envoy("gw-good", "s2", "SYNCED", vec![typed("CDS", "SYNCED", None), typed("EDS", "SYNCED", None)]),
    ]);
    let out = table(&r);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[1].starts_with("NODE") && lines[1].contains("CDS") && lines[1].contains("ECDS") && lines[1].ends_with("NACK"), "{out}");
    assert!(lines[2].starts_with("gw-bad") && lines[2].contains("NACKED"), "{out}");
    assert!(lines[2].contains("CDS svc_venue (service venue, traffic.load_balancing): Error adding/updating cluster(s) svc_venue"), "{out}");
    assert!(lines[2].contains("NOT_SENT"), "types never sent say so: {out}");
    assert!(lines[3].starts_with("gw-good") && !lines[3].contains("NACKED") && lines[3].ends_with('-'), "{out}");
}

#[test]
fn wait_synced_waits_for_every_connected_envoy_on_the_current_snapshot() {
    let synced = |node: &str, snapshot: &str| envoy(node, snapshot, "SYNCED", vec![typed("CDS", "SYNCED", None)]);
    assert_eq!(convergence(&reply(vec![synced("a", "s2"), synced("b", "s2")])), Convergence::Synced);
    assert!(matches!(convergence(&reply(vec![synced("a", "s2"), synced("b", "s1")])), Convergence::Waiting(w) if w[0].starts_with("b:")));
    let pending = envoy("a", "s2", "PENDING", vec![typed("CDS", "PENDING", None)]);
    assert!(matches!(convergence(&reply(vec![pending])), Convergence::Waiting(_)));
    assert!(matches!(convergence(&reply(vec![])), Convergence::Waiting(_)), "no Envoy: nothing has converged");
    let mut gone = synced("old", "s0");
    gone.connected = false;
    gone.state = "DISCONNECTED".into();
    assert_eq!(convergence(&reply(vec![synced("a", "s2"), gone])), Convergence::Synced, "a closed stream is not waited on");
    let stale_nack = envoy("bad", "s1", "NACKED", vec![typed("CDS", "NACKED", Some(lb_nack()))]);
    assert!(
        matches!(convergence(&reply(vec![stale_nack])), Convergence::Waiting(_)),
        "a NACK of an older snapshot than the current one may be fixed by it: wait"
    );
    let nacked = envoy("bad", "s2", "NACKED", vec![typed("CDS", "NACKED", Some(lb_nack()))]);
    match convergence(&reply(vec![synced("a", "s2"), nacked])) {
        Convergence::Nacked(why) => assert!(why[0].starts_with("bad: CDS svc_venue (service venue"), "{why:?}"),
        other => panic!("a NACK fails at once: {other:?}"),
    }
}

#[test]
fn the_detail_and_json_carry_envoys_message_verbatim() {
    let e = envoy("gw-bad", "s2", "NACKED", vec![typed("CDS", "NACKED", Some(lb_nack()))]);
    let detail = node_detail(&e, "s2");
    assert!(detail.contains("NACKED version v2 (nonce 4): Error adding/updating cluster(s) svc_venue: no load balancer"), "{detail}");
    assert!(detail.contains("rejected: svc_venue (service venue, traffic.load_balancing)\n"), "only what Envoy named: {detail}");
    let j = reply_json(&reply(vec![e]));
    assert_eq!(j["envoys"][0]["types"]["CDS"]["rejected"]["detail"], lb_nack().detail);
    assert_eq!(j["envoys"][0]["types"]["CDS"]["rejected"]["resources"][1]["service"], "venue");
}
