//! The filter's configuration as it travels from the control plane to Envoy (JSON).
//!
//! These are plain data transfer types: the control plane writes them, the filter reads them,
//! and both turn them into a [`crate::Policy`] with [`crate::Policy::compile`], which is where
//! every rule about what a valid config is lives.

use serde::{Deserialize, Serialize};

/// Everything the filter needs, for every service the gateway routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Content hash of the registry this config was derived from; shown in logs and metrics
    /// so an operator can tell which config a filter runs.
    pub config_version: String,
    /// The services, each with the path prefixes that route to it.
    pub services: Vec<ServiceConfig>,
}

/// One upstream service as the filter sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    /// Path prefixes (matched on whole segments) that Envoy routes to this service.
    pub prefixes: Vec<String>,
    /// Paths that need no token: exact paths, or prefixes written with a trailing `/*`.
    #[serde(default)]
    pub public_paths: Vec<String>,
}

impl FilterConfig {
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings cannot fail; fall back to an empty object
        // rather than panic so a filter never sees a half-written config.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}
