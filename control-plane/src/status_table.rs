//! What `stagedoor status` prints from ListEnvoys: a table like `istioctl proxy-status`
//! (one column per xDS type, then the NACK in force), one node's detail, the JSON form, and
//! the verdict `--wait-synced` waits for. Pure: the command does the calls.

use serde_json::{json, Value};
use stagedoor_proto::v1::{EnvoyStatus, ListEnvoysResponse, Nack, Push, RejectedResource, TypeStatus};

/// The type columns, in push order.
pub const TYPE_COLUMNS: [&str; 6] = ["CDS", "EDS", "LDS", "RDS", "ECDS", "SDS"];

fn type_of<'a>(envoy: &'a EnvoyStatus, name: &str) -> Option<&'a TypeStatus> {
    envoy.types.iter().find(|t| t.r#type == name)
}

fn cell(envoy: &EnvoyStatus, name: &str) -> String {
    if !envoy.connected {
        return String::from("DISCONNECTED");
    }
    match type_of(envoy, name) {
        None => String::from("NOT_SENT"),
        Some(t) if t.state == "PENDING" => format!("PENDING {}ms", t.pending_age_ms),
        Some(t) => t.state.clone(),
    }
}

/// Where a NACK came from: `svc_venue (service venue, traffic.load_balancing)`; the
/// resources Envoy's detail names, or all the rejected response carried if it names none.
pub fn rejected_entries(nack: &Nack) -> String {
    let named: Vec<&RejectedResource> = nack.resources.iter().filter(|r| r.named_in_detail).collect();
    let shown = if named.is_empty() { nack.resources.iter().collect() } else { named };
    let entries: Vec<String> = shown
        .into_iter()
        .map(|r| match (r.service.as_str(), r.field.as_str()) {
            ("", "") => r.name.clone(),
            ("", field) => format!("{} ({field})", r.name),
            (service, field) => format!("{} (service {service}, {field})", r.name),
        })
        .collect();
    entries.join("; ")
}

/// The NACKs in force on one Envoy, one per type: `CDS svc_x (service x, field): detail`.
fn nack_reasons(envoy: &EnvoyStatus) -> Vec<String> {
    envoy
        .types
        .iter()
        .flat_map(|t| t.rejected.iter().chain(&t.earlier_rejected).map(|n| format!("{} {}: {}", t.r#type, rejected_entries(n), n.detail)))
        .collect()
}

fn one_line(text: &str, max_chars: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= max_chars {
        return flat;
    }
    let cut: String = flat.chars().take(max_chars).collect();
    format!("{cut}...")
}

/// The table: a header and one row per Envoy, columns padded to their widest cell.
pub fn table(reply: &ListEnvoysResponse) -> String {
    let mut rows: Vec<Vec<String>> = vec![["NODE", "CLUSTER", "PROTOCOL"]
        .iter()
        .map(|s| s.to_string())
        .chain(TYPE_COLUMNS.iter().map(|s| s.to_string()))
        .chain([String::from("NACK")])
        .collect()];
    for envoy in &reply.envoys {
        let mut row = vec![envoy.node_id.clone(), envoy.node_cluster.clone(), envoy.protocol.clone()];
        row.extend(TYPE_COLUMNS.iter().map(|t| cell(envoy, t)));
        let reasons = nack_reasons(envoy);
        row.push(if reasons.is_empty() { String::from("-") } else { one_line(&reasons.join(" | "), 160) });
        rows.push(row);
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = format!("snapshot {}: {} Envoy(s)\n", reply.snapshot_version, reply.envoys.len());
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// One Envoy in full: every type's versions and timings, the NACKs with Envoy's message
/// verbatim and the registry entries, and the last pushes.
pub fn node_detail(envoy: &EnvoyStatus, snapshot_version: &str) -> String {
    let mut out = format!(
        "node {} (cluster {}, {}, stream {}): {}\n  offered snapshot {} (current {snapshot_version})\n",
        envoy.node_id,
        envoy.node_cluster,
        envoy.protocol,
        envoy.stream_id,
        envoy.state,
        if envoy.snapshot_version.is_empty() { "-" } else { &envoy.snapshot_version },
    );
    let dash = |s: &str| if s.is_empty() { String::from("-") } else { s.to_owned() };
    for t in &envoy.types {
        out.push_str(&format!(
            "  {:<5} {:<12} sent {} (nonce {}), ACKed {}, push to ACK {} ms{}\n",
            t.r#type,
            t.state,
            dash(&t.sent_version),
            dash(&t.sent_nonce),
            dash(&t.acked_version),
            t.push_to_ack_ms,
            if t.state == "PENDING" { format!(", pending {} ms", t.pending_age_ms) } else { String::new() },
        ));
        for n in t.rejected.iter().chain(&t.earlier_rejected) {
            out.push_str(&format!("        NACKED version {} (nonce {}): {}\n", n.version, n.nonce, n.detail));
            out.push_str(&format!("        rejected: {}\n", rejected_entries(n)));
        }
        if let (None, Some(n)) = (&t.rejected, &t.last_nack) {
            out.push_str(&format!("        last NACK (cleared) of version {}: {}\n", n.version, one_line(&n.detail, 160)));
        }
    }
    out.push_str("  recent pushes (oldest first):\n");
    for p in &envoy.history {
        out.push_str(&format!(
            "    {} {} nonce {} ({} resources): {}{}\n",
            p.r#type,
            p.version,
            p.nonce,
            p.resources,
            p.outcome,
            if p.outcome == "PENDING" { String::new() } else { format!(" after {} ms", p.answered_after_ms) }
        ));
    }
    out
}

fn nack_json(n: &Nack) -> Value {
    json!({
        "version": n.version, "nonce": n.nonce, "detail": n.detail, "at_unix_ms": n.at_unix_ms,
        "resources": n.resources.iter().map(|r| json!({"name": r.name, "service": r.service, "route": r.route, "field": r.field, "named_in_detail": r.named_in_detail})).collect::<Vec<_>>(),
    })
}

fn push_json(p: &Push) -> Value {
    json!({
        "type": p.r#type, "version": p.version, "nonce": p.nonce, "resources": p.resources,
        "sent_at_unix_ms": p.sent_at_unix_ms, "outcome": p.outcome, "answered_after_ms": p.answered_after_ms,
    })
}

pub fn envoy_json(e: &EnvoyStatus) -> Value {
    let types: serde_json::Map<String, Value> = e
        .types
        .iter()
        .map(|t| {
            (t.r#type.clone(), json!({
                "state": t.state, "sent_version": t.sent_version, "sent_nonce": t.sent_nonce,
                "acked_version": t.acked_version, "pending_age_ms": t.pending_age_ms, "push_to_ack_ms": t.push_to_ack_ms,
                "rejected": t.rejected.as_ref().map(nack_json), "last_nack": t.last_nack.as_ref().map(nack_json),
                "earlier_rejected": t.earlier_rejected.iter().map(nack_json).collect::<Vec<_>>(),
            }))
        })
        .collect();
    json!({
        "node_id": e.node_id, "node_cluster": e.node_cluster, "stream_id": e.stream_id, "protocol": e.protocol,
        "state": e.state, "connected": e.connected, "connected_at_unix_ms": e.connected_at_unix_ms,
        "last_seen_unix_ms": e.last_seen_unix_ms, "disconnected_at_unix_ms": e.disconnected_at_unix_ms,
        "snapshot_version": e.snapshot_version, "types": types,
        "history": e.history.iter().map(push_json).collect::<Vec<_>>(),
    })
}

pub fn reply_json(reply: &ListEnvoysResponse) -> Value {
    json!({"snapshot_version": reply.snapshot_version, "envoys": reply.envoys.iter().map(envoy_json).collect::<Vec<_>>()})
}

/// What `--wait-synced` makes of one reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Convergence {
    /// Every connected Envoy ACKed everything it was sent of the current snapshot.
    Synced,
    /// Some Envoy has not answered yet, or not been offered the current snapshot, or none
    /// is connected: worth waiting.
    Waiting(Vec<String>),
    /// Some Envoy rejected a push: the control plane will not re-send it until the registry
    /// changes, so waiting cannot help.
    Nacked(Vec<String>),
}

pub fn convergence(reply: &ListEnvoysResponse) -> Convergence {
    let connected: Vec<&EnvoyStatus> = reply.envoys.iter().filter(|e| e.connected).collect();
    if connected.is_empty() {
        return Convergence::Waiting(vec![String::from("no Envoy is connected")]);
    }
    // A NACK counts only on a stream that has been offered the current snapshot: an older
    // one's NACK may be what the current snapshot fixes.
    let current = |e: &&&EnvoyStatus| e.snapshot_version == reply.snapshot_version;
    let nacked: Vec<String> = connected
        .iter()
        .filter(current)
        .filter(|e| e.state == "NACKED")
        .map(|e| format!("{}: {}", e.node_id, nack_reasons(e).join(" | ")))
        .collect();
    if !nacked.is_empty() {
        return Convergence::Nacked(nacked);
    }
    let waiting: Vec<String> = connected
        .iter()
        .filter_map(|e| {
            if e.snapshot_version != reply.snapshot_version {
                Some(format!("{}: not offered snapshot {} yet", e.node_id, reply.snapshot_version))
            } else if e.state != "SYNCED" {
                Some(format!("{}: {}", e.node_id, e.state))
            } else {
                None
            }
        })
        .collect();
    if waiting.is_empty() {
        Convergence::Synced
    } else {
        Convergence::Waiting(waiting)
    }
}

#[cfg(test)]
#[path = "status_table_tests.rs"]
mod tests;
