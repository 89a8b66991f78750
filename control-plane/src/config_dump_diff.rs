//! `stagedoor status --node N --config-dump URL`: what one Envoy runs (its admin
//! `/config_dump`) against what the control plane sent it and it ACKed (CSDS),
//! per type and resource. Pure: the CLI fetches both and prints [`diff`].
//!
//! Endpoints are left out: Envoy's dump of them carries no version_info, and lists the
//! endpoints of every cluster (its own STRICT_DNS ones too), not what EDS sent.
//!
//! Versions: a SotW Envoy reports each resource at the version of the response that last
//! changed it (an unchanged cluster keeps an older version_info than its type's), so a
//! version is a difference only when this Envoy never ACKed it for that type (its ACKed
//! version and the ACKed pushes of the ledger's history, the last 32). A delta Envoy
//! reports each resource's own version (a content hash) where the ledger keeps the type's,
//! so for it only the names are compared.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::admin::v3::ClientResourceStatus;
use envoy_types::pb::envoy::service::status::v3::ClientConfig;
use serde_json::Value;

use crate::resources::type_url;

/// (short type, resource name) -> version_info.
pub type Versions = BTreeMap<(&'static str, String), String>;

/// Where each type sits in a config dump: the dump's `@type`, the list, and the path to a
/// resource's name inside one entry. Static resources are the bootstrap's, not xDS's.
const DUMPED: [(&str, &str, &str, &[&str]); 5] = [
    ("CDS", "ClustersConfigDump", "dynamic_active_clusters", &["cluster", "name"]),
    ("LDS", "ListenersConfigDump", "dynamic_listeners", &["name"]),
    ("RDS", "RoutesConfigDump", "dynamic_route_configs", &["route_config", "name"]),
    ("ECDS", "EcdsConfigDump", "ecds_filters", &["ecds_filter", "name"]),
    ("SDS", "SecretsConfigDump", "dynamic_active_secrets", &["name"]),
];

/// What Envoy runs, from its `/config_dump` JSON.
pub fn running(config_dump: &Value) -> Versions {
    let mut versions = Versions::new();
    let configs = config_dump["configs"].as_array().map(Vec::as_slice).unwrap_or_default();
    for (short, dump_type, list, name_path) in DUMPED {
        let dumps = configs.iter().filter(|c| c["@type"].as_str().is_some_and(|t| t.ends_with(&format!(".{dump_type}"))));
        for entry in dumps.flat_map(|d| d[list].as_array().cloned().unwrap_or_default()) {
            let name = name_path.iter().fold(&entry, |value, key| &value[*key]).as_str().unwrap_or_default().to_owned();
            // A listener's version is its active state's (a warming one is not running yet).
            let version = if short == "LDS" { &entry["active_state"]["version_info"] } else { &entry["version_info"] };
            if !name.is_empty() && (short != "LDS" || !entry["active_state"].is_null()) {
                versions.insert((short, name), version.as_str().unwrap_or_default().to_owned());
            }
        }
    }
    versions
}

/// What the control plane sent this Envoy and it ACKed (a NACKed resource: the version it
/// keeps running), from CSDS.
pub fn acked(config: &ClientConfig) -> Versions {
    let held = [ClientResourceStatus::Acked as i32, ClientResourceStatus::Nacked as i32];
    config
        .generic_xds_configs
        .iter()
        .filter(|g| held.contains(&g.client_status) && g.type_url != type_url::ENDPOINT)
        .filter_map(|g| type_url::known(&g.type_url).map(|t| ((type_url::short(t), g.name.clone()), g.version_info.clone())))
        .collect()
}

/// Per short type, every version this Envoy ACKed.
pub type AckedVersions = BTreeMap<String, BTreeSet<String>>;

/// One line per difference, by type then name; none when Envoy runs what was ACKed.
/// `versions` None (delta): names only.
pub fn diff(acked: &Versions, running: &Versions, versions: Option<&AckedVersions>) -> Vec<String> {
    let mut lines = Vec::new();
    for ((short, name), version) in acked {
        let Some(runs) = running.get(&(*short, name.clone())) else {
            lines.push(format!("{short} {name}: ACKed version {version}, not in Envoy's config_dump"));
            continue;
        };
        let ever_acked = versions.map(|v| v.get(*short).is_some_and(|set| set.contains(runs)));
        if ever_acked == Some(false) {
            lines.push(format!("{short} {name}: Envoy runs version {runs}, which it never ACKed (now ACKed: {version})"));
        }
    }
    for ((short, name), runs) in running {
        if !acked.contains_key(&(*short, name.clone())) {
            lines.push(format!("{short} {name}: Envoy runs version {runs}, which the control plane did not send it (or not ACKed)"));
        }
    }
    lines.sort();
    lines
}

#[cfg(test)]
#[path = "config_dump_diff_tests.rs"]
mod tests;
