//! Registry -> the wasm filter's config (the type shared with the filter).

use stagedoor_filter_core::config::{FilterConfig, ServiceConfig};

use crate::registry::Registry;

pub fn filter_config(registry: &Registry) -> FilterConfig {
    FilterConfig {
        config_version: registry.version.clone(),
        services: registry
            .services
            .values()
            .map(|svc| ServiceConfig {
                name: svc.name.clone(),
                prefixes: svc.routes.iter().map(|r| r.prefix.clone()).collect(),
                public_paths: svc.public_paths.clone(),
            })
            .collect(),
    }
}
