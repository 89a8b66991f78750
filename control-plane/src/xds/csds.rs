//! The ledger as the standard Client Status Discovery Service (envoy.service.status.v3)
//! answers it, so existing tooling reads Stagedoor's view of every Envoy. Pure: the
//! service in csds_server.rs authenticates and calls [`client_status`].
//!
//! Per node one ClientConfig; per xDS type one GenericXdsConfig per resource of the current
//! snapshot, with the type's state mapped as:
//! - SYNCED: config SYNCED, client ACKED, the version ACKed (the resource's content unless
//!   `exclude_resource_contents`);
//! - PENDING: config STALE (sent, not answered yet);
//! - NACKED: the refused resources (those Envoy's detail names, else all it was sent) config ERROR, client NACKED, with `error_state` holding
//!   Envoy's detail verbatim and the rejected version; the others of the type as if the
//!   NACK had not happened;
//! - NOT_SENT: config NOT_SENT. Closed streams are left out: they hold nothing now.

use envoy_types::pb::envoy::admin::v3::{ClientResourceStatus, UpdateFailureState};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::envoy::r#type::matcher::v3::NodeMatcher;
use envoy_types::pb::envoy::service::status::v3::client_config::GenericXdsConfig;
use envoy_types::pb::envoy::service::status::v3::{ClientConfig, ClientStatusRequest, ClientStatusResponse, ConfigStatus};
use envoy_types::pb::google::protobuf::Timestamp;

use super::ledger::{NodeRecord, SyncState, TypeRecord};
use crate::resources::type_url;
use crate::snapshot::Snapshot;

fn timestamp(unix_ms: u64) -> Timestamp {
    Timestamp { seconds: i64::try_from(unix_ms / 1000).unwrap_or(i64::MAX), nanos: ((unix_ms % 1000) * 1_000_000) as i32 }
}

/// Whether a node matcher's node id pattern takes this node (exact, prefix, suffix,
/// contains; a regex or metadata matcher is not supported and matches nothing).
fn matches(matcher: &NodeMatcher, node_id: &str) -> bool {
    if !matcher.node_metadatas.is_empty() {
        return false;
    }
    let Some(pattern) = matcher.node_id.as_ref().and_then(|m| m.match_pattern.as_ref()) else { return true };
    match pattern {
        MatchPattern::Exact(s) => node_id == s,
        MatchPattern::Prefix(s) => node_id.starts_with(s.as_str()),
        MatchPattern::Suffix(s) => node_id.ends_with(s.as_str()),
        MatchPattern::Contains(s) => node_id.contains(s.as_str()),
        _ => false,
    }
}

/// One resource of one type, as this node stands with it.
fn resource_config(
    type_url: &str,
    name: &str,
    record: Option<&TypeRecord>,
    state: SyncState,
    snapshot: &Snapshot,
    with_contents: bool,
) -> GenericXdsConfig {
    let typed = snapshot.types.get(type_url);
    let rejected = record.and_then(|r| r.refusal_of(name));
    let acked = record.and_then(|r| r.acked_version.clone()).unwrap_or_default();
    let mut config = GenericXdsConfig { type_url: type_url.to_owned(), name: name.to_owned(), version_info: acked.clone(), ..Default::default() };
    if let Some(nack) = rejected {
        config.config_status = ConfigStatus::Error as i32;
        config.client_status = ClientResourceStatus::Nacked as i32;
        config.last_updated = Some(timestamp(nack.at_unix_ms));
        config.error_state = Some(UpdateFailureState {
            failed_configuration: None,
            last_update_attempt: Some(timestamp(nack.at_unix_ms)),
            details: nack.detail.clone(),
            version_info: nack.version.clone(),
        });
        return config;
    }
    let (config_status, client_status) = match state {
        SyncState::Pending => (ConfigStatus::Stale, ClientResourceStatus::Unknown),
        SyncState::NotSent | SyncState::Disconnected => (ConfigStatus::NotSent, ClientResourceStatus::Unknown),
        SyncState::Synced | SyncState::Nacked => (ConfigStatus::Synced, ClientResourceStatus::Acked),
    };
    config.config_status = config_status as i32;
    config.client_status = client_status as i32;
    config.last_updated = record.and_then(|r| r.acked_at_unix_ms).map(timestamp);
    // The content is known only when what Envoy ACKed is what the snapshot holds.
    let current = typed.is_some_and(|t| t.version == acked);
    if with_contents && current && client_status == ClientResourceStatus::Acked {
        config.xds_config = typed.and_then(|t| t.resources.get(name)).map(|any| (**any).clone());
    }
    config
}

fn client_config(node: &NodeRecord, snapshot: &Snapshot, with_contents: bool) -> ClientConfig {
    let mut generic_xds_configs = Vec::new();
    for type_url in type_url::SERVED {
        let short = type_url::short(type_url);
        let record = node.types.get(short);
        let state = node.state_of(short);
        let mut names: Vec<String> = snapshot.types.get(type_url).map(|t| t.resources.keys().cloned().collect()).unwrap_or_default();
        // Rejected resources the snapshot no longer has still show, with their error.
        for rejected in record.iter().flat_map(|r| r.in_force()).flat_map(|n| n.refused()) {
            if !names.contains(&rejected.name) {
                names.push(rejected.name.clone());
            }
        }
        // SDS: an Envoy asks only for the secrets it needs; unsent ones are not its config.
        if type_url == type_url::SECRET && record.is_none() {
            continue;
        }
        generic_xds_configs.extend(names.iter().map(|name| resource_config(type_url, name, record, state, snapshot, with_contents)));
    }
    ClientConfig {
        node: Some(Node { id: node.node_id.clone(), cluster: node.node_cluster.clone(), ..Default::default() }),
        generic_xds_configs,
        ..Default::default()
    }
}

/// The CSDS answer for `request` from the ledger's `nodes` and the current snapshot.
pub fn client_status(request: &ClientStatusRequest, nodes: &[NodeRecord], snapshot: &Snapshot) -> ClientStatusResponse {
    let wanted = |node: &NodeRecord| {
        node.is_connected()
            && (request.node_matchers.is_empty() || request.node_matchers.iter().any(|m| matches(m, &node.node_id)))
            && request.node.as_ref().is_none_or(|n| n.id.is_empty() || n.id == node.node_id)
    };
    let with_contents = !request.exclude_resource_contents;
    ClientStatusResponse { config: nodes.iter().filter(|n| wanted(n)).map(|n| client_config(n, snapshot, with_contents)).collect() }
}

#[cfg(test)]
#[path = "csds_tests.rs"]
mod tests;
