//! Registry -> the wasm filter's config (the type shared with the filter).

use stagedoor_filter_core::config::{FilterConfig, ServiceConfig};

use crate::registry::Registry;

/// The config's version is a hash of its own content, not the registry's: an instance
/// change must not reload the filter in every Envoy.
pub fn filter_config(registry: &Registry) -> FilterConfig {
    let mut config = FilterConfig {
        config_version: String::new(),
        services: registry
            .services
            .values()
            .map(|svc| ServiceConfig {
                name: svc.name.clone(),
                prefixes: svc.routes.iter().map(|r| r.prefix.clone()).collect(),
                public_paths: svc.public_paths.clone(),
            })
            .collect(),
    };
    config.config_version = crate::hash::short_hash(config.to_json().as_bytes());
    config
}
