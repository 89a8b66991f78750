//! The convergence ledger: for every Envoy stream and xDS type, what was pushed (version,
//! nonce, when), what was ACKed and how long that took, and the NACK that is in force, with
//! Envoy's error detail verbatim and the registry entry behind each rejected resource.
//!
//! Pure state: every input carries its own time (`now_ms`), so each transition is
//! unit-tested (ledger_tests.rs); `status.rs` wraps it in a lock and the clock.
//!
//! A NACK stays in force ("rejected") while the resources it refused are quarantined on
//! that stream (quarantine.rs): an ACK of the type narrows it to the resources still
//! quarantined, and ends it when none is. The state machines never re-send a refused
//! resource at the refused content (sotw.rs, delta.rs), so only a later registry change,
//! once Envoy accepts it, clears it.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

/// Pushes kept per node, newest last.
pub const HISTORY_PER_NODE: usize = 32;
/// Streams kept after they close, so a vanished Envoy shows as DISCONNECTED.
pub const DISCONNECTED_KEPT: usize = 64;
/// Responses awaiting an answer kept per type (delta may have several in flight).
const AWAITING_KEPT: usize = 16;
/// Earlier NACKs kept in force per type (each refused resources a later one did not).
const EARLIER_NACKS_KEPT: usize = 16;

/// Where one type of one Envoy stands, as an operator reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncState {
    /// Envoy ACKed the last response sent.
    Synced,
    /// A response is sent and not answered yet.
    Pending,
    /// Envoy rejected the last response and runs its last good config of this type.
    Nacked,
    /// Nothing of this type sent yet.
    NotSent,
    /// The stream is closed.
    Disconnected,
}

impl SyncState {
    pub const ALL: [SyncState; 5] = [Self::Synced, Self::Pending, Self::Nacked, Self::NotSent, Self::Disconnected];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Synced => "SYNCED",
            Self::Pending => "PENDING",
            Self::Nacked => "NACKED",
            Self::NotSent => "NOT_SENT",
            Self::Disconnected => "DISCONNECTED",
        }
    }
}

/// The part of the registry a resource was made from (translate/origins.rs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistryEntry {
    /// The service, when the resource is one service's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The route prefix, when the resource is one route's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The registry fields that feed the resource, e.g. `traffic.load_balancing`.
    pub field: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedResource {
    pub name: String,
    /// None when the resource is not made from the registry (or no longer in it).
    pub entry: Option<RegistryEntry>,
    /// Envoy's detail names it. A SotW response carries every resource of its type and
    /// Envoy applies what it can, so the ones it names are the ones it refused.
    pub named_in_detail: bool,
}

/// Whether `detail` names `name` as a whole word (not as part of a longer name).
pub fn names_resource(detail: &str, name: &str) -> bool {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.';
    detail.match_indices(name).any(|(at, _)| {
        let before = detail[..at].chars().next_back();
        let after = detail[at + name.len()..].chars().next();
        !before.is_some_and(is_name_char) && !after.is_some_and(is_name_char)
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nack {
    pub version: String,
    pub nonce: String,
    /// Envoy's error_detail message, verbatim.
    pub detail: String,
    pub at_unix_ms: u64,
    /// The resources of the rejected response (in delta, exactly those it carried).
    pub resources: Vec<RejectedResource>,
}

impl Nack {
    /// This NACK with only the refused resources among `quarantined`; None when it has none.
    fn narrowed_to(mut self, quarantined: &[String]) -> Option<Nack> {
        let refused: Vec<String> = self.refused().iter().map(|r| r.name.clone()).collect();
        self.resources.retain(|r| refused.contains(&r.name) && quarantined.contains(&r.name));
        for resource in &mut self.resources {
            // Kept as refused even when the detail named none (then every one was).
            resource.named_in_detail = true;
        }
        (!self.resources.is_empty()).then_some(self)
    }

    /// The resources Envoy refused: those its detail names, or every one the response
    /// carried when it names none.
    pub fn refused(&self) -> Vec<&RejectedResource> {
        let named: Vec<&RejectedResource> = self.resources.iter().filter(|r| r.named_in_detail).collect();
        if named.is_empty() {
            self.resources.iter().collect()
        } else {
            named
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    Pending,
    Acked,
    Nacked,
    /// A later response of the same type was answered first (SotW answers only the latest).
    Superseded,
}

/// One response sent to one Envoy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Push {
    #[serde(rename = "type")]
    pub type_name: String,
    pub version: String,
    pub nonce: String,
    pub resources: usize,
    pub sent_at_unix_ms: u64,
    pub outcome: Outcome,
    /// Sent to answered, once answered.
    pub answered_after_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Awaiting {
    nonce: String,
    at_ms: u64,
}

/// One xDS type of one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TypeRecord {
    pub sent_version: Option<String>,
    pub sent_nonce: Option<String>,
    pub sent_at_unix_ms: Option<u64>,
    pub acked_version: Option<String>,
    pub acked_at_unix_ms: Option<u64>,
    /// Push to ACK of the last ACKed response.
    pub last_push_ack_ms: Option<u64>,
    /// The NACK in force: set by a NACK, narrowed by a later ACK of this type to the
    /// resources still quarantined, cleared when none is.
    pub rejected: Option<Nack>,
    /// Earlier NACKs of this type whose refused resources are still quarantined (a later
    /// NACK refused others), narrowed to those: in force like `rejected`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub earlier_rejected: Vec<Nack>,
    /// The last NACK ever, kept after it is cleared.
    pub last_nack: Option<Nack>,
    #[serde(skip)]
    awaiting: Vec<Awaiting>,
}

impl TypeRecord {
    /// This type's state while its stream is open.
    pub fn state(&self) -> SyncState {
        if !self.awaiting.is_empty() {
            SyncState::Pending
        } else if self.in_force().next().is_some() {
            SyncState::Nacked
        } else if self.sent_version.is_none() {
            SyncState::NotSent
        } else {
            SyncState::Synced
        }
    }

    /// Every NACK in force, the latest first.
    pub fn in_force(&self) -> impl Iterator<Item = &Nack> {
        self.rejected.iter().chain(&self.earlier_rejected)
    }

    /// Whether a NACK in force refused `name`, and which.
    pub fn refusal_of(&self, name: &str) -> Option<&Nack> {
        self.in_force().find(|n| n.refused().iter().any(|r| r.name == name))
    }

    /// How long the oldest unanswered response has waited.
    pub fn pending_age_ms(&self, now_ms: u64) -> Option<u64> {
        self.awaiting.first().map(|a| now_ms.saturating_sub(a.at_ms))
    }

    /// Removes `nonce` and everything sent before it (answered implicitly); its send time.
    fn answer(&mut self, nonce: &str) -> Option<u64> {
        let position = self.awaiting.iter().position(|a| a.nonce == nonce)?;
        let answered: Vec<Awaiting> = self.awaiting.drain(..=position).collect();
        answered.last().map(|a| a.at_ms)
    }
}

/// One Envoy stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRecord {
    pub stream_id: u64,
    pub node_id: String,
    pub node_cluster: String,
    pub protocol: String,
    pub connected_at_unix_ms: u64,
    pub last_seen_unix_ms: u64,
    pub disconnected_at_unix_ms: Option<u64>,
    /// The last snapshot this stream has been offered (responses for it may be in flight).
    pub snapshot_version: Option<String>,
    /// The types that snapshot has for every Envoy (SDS aside: an Envoy asks only for the
    /// secrets it names): until each has been sent, the node is not synced.
    pub expected_types: Vec<String>,
    /// Keyed by short type name: CDS, EDS, LDS, RDS, ECDS, SDS.
    pub types: BTreeMap<String, TypeRecord>,
    pub history: VecDeque<Push>,
}

impl NodeRecord {
    pub fn is_connected(&self) -> bool {
        self.disconnected_at_unix_ms.is_none()
    }

    pub fn state_of(&self, type_name: &str) -> SyncState {
        match (self.is_connected(), self.types.get(type_name)) {
            (false, _) => SyncState::Disconnected,
            (true, None) => SyncState::NotSent,
            (true, Some(record)) => record.state(),
        }
    }

    /// The worst state of any type: what a deploy pipeline waits on. A type the offered
    /// snapshot has and this stream was not sent yet (a new Envoy between its CDS ACK and
    /// its first EDS request, say) counts as PENDING.
    pub fn overall(&self) -> SyncState {
        if !self.is_connected() {
            return SyncState::Disconnected;
        }
        let mut states: Vec<SyncState> = self.types.values().map(TypeRecord::state).collect();
        if self.expected_types.iter().any(|t| self.state_of(t) == SyncState::NotSent) {
            states.push(SyncState::Pending);
        }
        if states.contains(&SyncState::Nacked) {
            SyncState::Nacked
        } else if states.contains(&SyncState::Pending) {
            SyncState::Pending
        } else if states.contains(&SyncState::Synced) {
            SyncState::Synced
        } else {
            SyncState::NotSent
        }
    }

    fn push_history(&mut self, push: Push) {
        if self.history.len() == HISTORY_PER_NODE {
            self.history.pop_front();
        }
        self.history.push_back(push);
    }

    /// Marks the push with `nonce` and the earlier unanswered ones of its type.
    fn settle_history(&mut self, type_name: &str, nonce: &str, outcome: Outcome, now_ms: u64) {
        let Some(position) = self.history.iter().rposition(|p| p.type_name == type_name && p.nonce == nonce) else { return };
        for (i, push) in self.history.iter_mut().enumerate().take(position + 1) {
            if push.type_name != type_name || push.outcome != Outcome::Pending {
                continue;
            }
            push.outcome = if i == position { outcome } else { Outcome::Superseded };
            push.answered_after_ms = Some(now_ms.saturating_sub(push.sent_at_unix_ms));
        }
    }
}

/// An ACK that completes a push: what the push-to-ACK histogram records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    pub type_name: String,
    pub push_to_ack_ms: u64,
}

/// Every stream, open and recently closed.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    nodes: BTreeMap<u64, NodeRecord>,
}

impl Ledger {
    /// A stream said who it is. Closed streams of the same node give way to it.
    pub fn connect(&mut self, stream_id: u64, node_id: &str, node_cluster: &str, protocol: &str, now_ms: u64) {
        self.nodes.retain(|_, n| n.is_connected() || n.node_id != node_id);
        self.nodes.insert(
            stream_id,
            NodeRecord {
                stream_id,
                node_id: node_id.to_owned(),
                node_cluster: node_cluster.to_owned(),
                protocol: protocol.to_owned(),
                connected_at_unix_ms: now_ms,
                last_seen_unix_ms: now_ms,
                disconnected_at_unix_ms: None,
                snapshot_version: None,
                expected_types: Vec::new(),
                types: BTreeMap::new(),
                history: VecDeque::new(),
            },
        );
    }

    /// The stream closed: kept as DISCONNECTED, the oldest closed ones dropped first.
    pub fn disconnect(&mut self, stream_id: u64, now_ms: u64) {
        let Some(node) = self.nodes.get_mut(&stream_id) else { return };
        if node.disconnected_at_unix_ms.is_some() {
            return;
        }
        node.disconnected_at_unix_ms = Some(now_ms);
        let mut closed: Vec<(u64, u64)> =
            self.nodes.values().filter_map(|n| n.disconnected_at_unix_ms.map(|at| (at, n.stream_id))).collect();
        if closed.len() > DISCONNECTED_KEPT {
            closed.sort_unstable();
            for (_, id) in closed.iter().take(closed.len() - DISCONNECTED_KEPT) {
                self.nodes.remove(id);
            }
        }
    }

    /// A request arrived on the stream.
    pub fn seen(&mut self, stream_id: u64, now_ms: u64) {
        if let Some(node) = self.nodes.get_mut(&stream_id) {
            node.last_seen_unix_ms = now_ms;
        }
    }

    /// The stream has been offered this snapshot, which has these types for every Envoy.
    pub fn offered(&mut self, stream_id: u64, snapshot_version: &str, expected_types: &[&str]) {
        if let Some(node) = self.nodes.get_mut(&stream_id) {
            node.snapshot_version = Some(snapshot_version.to_owned());
            node.expected_types = expected_types.iter().map(|t| (*t).to_owned()).collect();
        }
    }

    pub fn sent(&mut self, stream_id: u64, type_name: &str, version: &str, nonce: &str, resources: usize, now_ms: u64) {
        let Some(node) = self.nodes.get_mut(&stream_id) else { return };
        let record = node.types.entry(type_name.to_owned()).or_default();
        record.sent_version = Some(version.to_owned());
        record.sent_nonce = Some(nonce.to_owned());
        record.sent_at_unix_ms = Some(now_ms);
        if record.awaiting.len() == AWAITING_KEPT {
            record.awaiting.remove(0);
        }
        record.awaiting.push(Awaiting { nonce: nonce.to_owned(), at_ms: now_ms });
        node.push_history(Push {
            type_name: type_name.to_owned(),
            version: version.to_owned(),
            nonce: nonce.to_owned(),
            resources,
            sent_at_unix_ms: now_ms,
            outcome: Outcome::Pending,
            answered_after_ms: None,
        });
    }

    /// Envoy ACKed the response with `nonce`: the rejection of this type, if any, is over
    /// but for the resources still `quarantined`.
    pub fn ack(&mut self, stream_id: u64, type_name: &str, version: &str, nonce: &str, quarantined: &[String], now_ms: u64) -> Option<Acked> {
        let node = self.nodes.get_mut(&stream_id)?;
        node.last_seen_unix_ms = now_ms;
        let record = node.types.entry(type_name.to_owned()).or_default();
        let sent_at = record.answer(nonce);
        record.acked_version = Some(version.to_owned());
        record.acked_at_unix_ms = Some(now_ms);
        record.rejected = record.rejected.take().and_then(|nack| nack.narrowed_to(quarantined));
        let earlier = std::mem::take(&mut record.earlier_rejected);
        record.earlier_rejected = earlier.into_iter().filter_map(|nack| nack.narrowed_to(quarantined)).collect();
        let push_to_ack_ms = sent_at.map(|at| now_ms.saturating_sub(at));
        record.last_push_ack_ms = push_to_ack_ms.or(record.last_push_ack_ms);
        node.settle_history(type_name, nonce, Outcome::Acked, now_ms);
        push_to_ack_ms.map(|push_to_ack_ms| Acked { type_name: type_name.to_owned(), push_to_ack_ms })
    }

    /// Envoy NACKed the response with `nonce`; it keeps its last good config of this type.
    pub fn nack(&mut self, stream_id: u64, type_name: &str, nack: Nack, now_ms: u64) {
        let Some(node) = self.nodes.get_mut(&stream_id) else { return };
        node.last_seen_unix_ms = now_ms;
        let record = node.types.entry(type_name.to_owned()).or_default();
        record.answer(&nack.nonce);
        node.settle_history(type_name, &nack.nonce, Outcome::Nacked, now_ms);
        let record = node.types.entry(type_name.to_owned()).or_default();
        // What the NACK in force refused and this one does not stays in force beside it
        // (quarantined until an ACK says otherwise).
        let refused_now: Vec<String> = nack.refused().iter().map(|r| r.name.clone()).collect();
        let still = |old: Nack| {
            let others: Vec<String> = old.refused().iter().map(|r| r.name.clone()).filter(|n| !refused_now.contains(n)).collect();
            old.narrowed_to(&others)
        };
        let mut earlier: Vec<Nack> = record.rejected.take().into_iter().chain(std::mem::take(&mut record.earlier_rejected)).filter_map(still).collect();
        earlier.truncate(EARLIER_NACKS_KEPT);
        record.earlier_rejected = earlier;
        record.rejected = Some(nack.clone());
        record.last_nack = Some(nack);
    }

    pub fn node(&self, stream_id: u64) -> Option<&NodeRecord> {
        self.nodes.get(&stream_id)
    }

    /// Open streams first (by stream id), then closed ones.
    pub fn nodes(&self) -> Vec<NodeRecord> {
        let (open, closed): (Vec<&NodeRecord>, Vec<&NodeRecord>) = self.nodes.values().partition(|n| n.is_connected());
        open.into_iter().chain(closed).cloned().collect()
    }
}

#[cfg(test)]
#[path = "ledger_tests.rs"]
mod tests;
