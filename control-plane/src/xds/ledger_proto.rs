//! The ledger as the stagedoor.v1 API carries it (ListEnvoys).

use stagedoor_proto::v1;

use super::ledger::{Nack, NodeRecord, Outcome, Push};

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Pending => "PENDING",
        Outcome::Acked => "ACKED",
        Outcome::Nacked => "NACKED",
        Outcome::Superseded => "SUPERSEDED",
    }
}

fn nack(nack: &Nack) -> v1::Nack {
    let Nack { version, nonce, detail, at_unix_ms, resources } = nack;
    v1::Nack {
        version: version.clone(),
        nonce: nonce.clone(),
        detail: detail.clone(),
        at_unix_ms: *at_unix_ms,
        resources: resources
            .iter()
            .map(|r| {
                let entry = r.entry.clone().unwrap_or_else(|| super::ledger::RegistryEntry { service: None, route: None, field: String::new() });
                v1::RejectedResource {
                    name: r.name.clone(),
                    service: entry.service.unwrap_or_default(),
                    route: entry.route.unwrap_or_default(),
                    field: entry.field,
                    named_in_detail: r.named_in_detail,
                }
            })
            .collect(),
    }
}

fn push(push: &Push) -> v1::Push {
    let Push { type_name, version, nonce, resources, sent_at_unix_ms, outcome, answered_after_ms } = push;
    v1::Push {
        r#type: type_name.clone(),
        version: version.clone(),
        nonce: nonce.clone(),
        resources: *resources as u64,
        sent_at_unix_ms: *sent_at_unix_ms,
        outcome: outcome_name(*outcome).to_owned(),
        answered_after_ms: answered_after_ms.unwrap_or_default(),
    }
}

pub fn envoy_status(node: &NodeRecord, now_ms: u64) -> v1::EnvoyStatus {
    v1::EnvoyStatus {
        node_id: node.node_id.clone(),
        node_cluster: node.node_cluster.clone(),
        stream_id: node.stream_id,
        protocol: node.protocol.clone(),
        connected_at_unix_ms: node.connected_at_unix_ms,
        types: node
            .types
            .iter()
            .map(|(name, t)| v1::TypeStatus {
                r#type: name.clone(),
                acked_version: t.acked_version.clone().unwrap_or_default(),
                last_nack: t.last_nack.as_ref().map(nack),
                state: node.state_of(name).as_str().to_owned(),
                sent_version: t.sent_version.clone().unwrap_or_default(),
                sent_nonce: t.sent_nonce.clone().unwrap_or_default(),
                pending_age_ms: t.pending_age_ms(now_ms).unwrap_or_default(),
                push_to_ack_ms: t.last_push_ack_ms.unwrap_or_default(),
                rejected: t.rejected.as_ref().map(nack),
                earlier_rejected: t.earlier_rejected.iter().map(nack).collect(),
            })
            .collect(),
        state: node.overall().as_str().to_owned(),
        connected: node.is_connected(),
        last_seen_unix_ms: node.last_seen_unix_ms,
        disconnected_at_unix_ms: node.disconnected_at_unix_ms.unwrap_or_default(),
        snapshot_version: node.snapshot_version.clone().unwrap_or_default(),
        history: node.history.iter().map(push).collect(),
    }
}
