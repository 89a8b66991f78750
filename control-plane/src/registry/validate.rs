//! Registry validation: every rule about what a good registry is, in one place.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};
use stagedoor_filter_core::path::is_normalized;

use super::model::{RegistryFile, ServiceSpec};

/// A registry that passed validation, with the content hash that versions it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// Services by name, so every derived list is in a stable order.
    pub services: BTreeMap<String, ServiceSpec>,
    /// Hash of the canonical form: an unchanged registry keeps its version.
    pub version: String,
}

/// A registry error, naming the file, the service and the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{file}: cannot read: {source}")]
    Io { file: String, source: std::io::Error },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: service \"{service}\": {field}: {reason}")]
    Invalid { file: String, service: String, field: String, reason: String },
}

impl RegistryError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { file: path.display().to_string(), source }
    }
}

impl Registry {
    /// Parses YAML (JSON is YAML too) and validates it. `file` only names the source in errors.
    pub fn parse(file: &str, text: &str) -> Result<Self, RegistryError> {
        let parsed: RegistryFile = serde_yaml::from_str(text)
            .map_err(|e| RegistryError::Syntax { file: file.to_owned(), message: e.to_string() })?;
        Self::validate(file, parsed)
    }

    pub fn validate(file: &str, parsed: RegistryFile) -> Result<Self, RegistryError> {
        let invalid = |service: &str, field: String, reason: String| RegistryError::Invalid {
            file: file.to_owned(),
            service: service.to_owned(),
            field,
            reason,
        };
        let mut services = BTreeMap::new();
        let mut prefix_owner: BTreeMap<String, String> = BTreeMap::new();
        for (index, svc) in parsed.services.into_iter().enumerate() {
            let name = svc.name.clone();
            let label = if name.is_empty() { format!("services[{index}]") } else { name.clone() };
            if !is_service_name(&name) {
                return Err(invalid(&label, "name".into(), "must match [a-z][a-z0-9-]{0,39}".into()));
            }
            if services.contains_key(&name) {
                return Err(invalid(&label, "name".into(), "is defined twice".into()));
            }
            if svc.routes.is_empty() {
                return Err(invalid(&label, "routes".into(), "needs at least one route".into()));
            }
            for (i, route) in svc.routes.iter().enumerate() {
                check_prefix(&route.prefix).map_err(|r| invalid(&label, format!("routes[{i}].prefix"), r))?;
                if route.prefix == "/health" {
                    return Err(invalid(&label, format!("routes[{i}].prefix"), "/health is answered by the gateway itself".into()));
                }
                if let Some(up) = &route.upstream_prefix {
                    check_prefix(up).map_err(|r| invalid(&label, format!("routes[{i}].upstream_prefix"), r))?;
                }
                if let Some(owner) = prefix_owner.insert(route.prefix.clone(), name.clone()) {
                    return Err(invalid(
                        &label,
                        format!("routes[{i}].prefix"),
                        format!("{} is already routed to service \"{owner}\"", route.prefix),
                    ));
                }
            }
            for (i, inst) in svc.instances.iter().enumerate() {
                if !is_host(&inst.address) {
                    return Err(invalid(&label, format!("instances[{i}].address"), "must be an IP address or a DNS name".into()));
                }
                if inst.port == 0 {
                    return Err(invalid(&label, format!("instances[{i}].port"), "must be 1-65535".into()));
                }
            }
            for (i, public) in svc.public_paths.iter().enumerate() {
                stagedoor_filter_core::path::PathPattern::parse(public)
                    .map_err(|e| invalid(&label, format!("public_paths[{i}]"), e.to_string()))?;
            }
            services.insert(name, svc);
        }
        let version = content_hash(&services);
        Ok(Self { services, version })
    }
}

fn check_prefix(prefix: &str) -> Result<(), String> {
    if !prefix.starts_with('/') {
        return Err("must start with '/'".into());
    }
    if prefix.len() > 1 && prefix.ends_with('/') {
        return Err("must not end with '/'".into());
    }
    if !is_normalized(prefix) || prefix.contains('*') {
        return Err("must be a plain normalized path (no '*', '?', '#', '%', '\\', ';', '//', dot segments)".into());
    }
    Ok(())
}

fn is_service_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 40
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_host(address: &str) -> bool {
    address.parse::<std::net::IpAddr>().is_ok()
        || (!address.is_empty()
            && address.len() <= 253
            && address.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            }))
}

fn content_hash(services: &BTreeMap<String, ServiceSpec>) -> String {
    // serde_json of a BTreeMap of plain structs is deterministic and cannot fail.
    let canonical = serde_json::to_vec(services).unwrap_or_default();
    hex::encode(&Sha256::digest(&canonical)[..8])
}
