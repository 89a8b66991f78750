//! The compiled, validated form of a [`FilterConfig`]: what the filter consults per request.

use crate::config::FilterConfig;
use crate::path::{is_normalized, is_under_prefix, PathPattern, PatternError};

/// A config the filter can enforce. Only [`Policy::compile`] makes one, so holding a
/// `Policy` means every rule in it was checked.
#[derive(Debug, Clone)]
pub struct Policy {
    pub config_version: String,
    services: Vec<Service>,
    /// (prefix, index into `services`), longest prefix first, so the first hit is the one
    /// Envoy's route table picks too.
    prefixes: Vec<(String, usize)>,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub public_paths: Vec<PathPattern>,
}

/// A config error, naming the item and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{item}: {field}: {reason}")]
pub struct CompileError {
    pub item: String,
    pub field: String,
    pub reason: String,
}

impl CompileError {
    fn new(item: impl Into<String>, field: impl Into<String>, reason: impl ToString) -> Self {
        Self { item: item.into(), field: field.into(), reason: reason.to_string() }
    }
}

impl Policy {
    pub fn compile(config: &FilterConfig) -> Result<Self, CompileError> {
        let mut services = Vec::with_capacity(config.services.len());
        let mut prefixes: Vec<(String, usize)> = Vec::new();
        for (index, svc) in config.services.iter().enumerate() {
            let item = format!("service \"{}\"", svc.name);
            if svc.name.is_empty() {
                return Err(CompileError::new(format!("services[{index}]"), "name", "must not be empty"));
            }
            if svc.prefixes.is_empty() {
                return Err(CompileError::new(&item, "prefixes", "needs at least one prefix"));
            }
            for (i, prefix) in svc.prefixes.iter().enumerate() {
                if !is_normalized(prefix) {
                    return Err(CompileError::new(&item, format!("prefixes[{i}]"), PatternError::NotNormalized));
                }
                if let Some((_, other)) = prefixes.iter().find(|(p, _)| p == prefix) {
                    let other_name = &config.services[*other].name;
                    return Err(CompileError::new(
                        &item,
                        format!("prefixes[{i}]"),
                        format!("{prefix} is already routed to service \"{other_name}\""),
                    ));
                }
                prefixes.push((prefix.clone(), index));
            }
            let public_paths = svc
                .public_paths
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    PathPattern::parse(p).map_err(|e| CompileError::new(&item, format!("public_paths[{i}]"), e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            services.push(Service { name: svc.name.clone(), public_paths });
        }
        prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Ok(Self { config_version: config.config_version.clone(), services, prefixes })
    }

    /// The service Envoy routes `path` to, by the longest whole-segment prefix.
    pub fn service_for(&self, path: &str) -> Option<&Service> {
        self.prefixes
            .iter()
            .find(|(prefix, _)| is_under_prefix(path, prefix))
            .and_then(|(_, index)| self.services.get(*index))
    }
}

impl Service {
    pub fn is_public(&self, path: &str) -> bool {
        self.public_paths.iter().any(|p| p.matches(path))
    }
}
