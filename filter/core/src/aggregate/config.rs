//! Composite routes as they travel from the registry to the filter (JSON): plain data,
//! judged by [`super::Composite::compile`].

use serde::{Deserialize, Serialize};

/// A GET route the filter answers itself by calling several services at once and composing
/// their JSON answers into one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompositeConfig {
    /// Lower-case, `[a-z][a-z0-9-]*`; names the route in errors and logs.
    pub name: String,
    /// The route's path: literal segments and `{param}` segments, e.g.
    /// `/api/v1/aggregate/events/{eventId}`. GET (and HEAD) only.
    pub path: String,
    /// The permission the caller needs (as in a service's rules, `-own` and path params
    /// included); absent: any valid token. A composite route is never public.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
    /// The whole response is answered within this time, whatever its sources do.
    pub deadline_ms: u64,
    /// Bytes one source's answer may have; a larger one counts as that source failing.
    #[serde(default = "default_source_bytes")]
    pub max_source_bytes: usize,
    /// Bytes all sources' answers may have together; a source whose answer would pass it
    /// counts as failing.
    #[serde(default = "default_total_bytes")]
    pub max_total_bytes: usize,
    pub sources: Vec<SourceConfig>,
}

/// One service call of a composite route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Named in `_metadata.sources[]` and in a 502/504; also the JSON key the answer lands
    /// under unless `key` says otherwise.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The registry service called, through its Envoy cluster (outlier detection and
    /// circuit breakers apply).
    pub service: String,
    /// The path sent to the service as written (no route prefix rewrite applies), with the
    /// route's `{param}`s filled in, anywhere in the path or query:
    /// `/api/v1/events/{eventId}/availability`.
    pub path: String,
    /// Required: its failure answers the whole request 502 (504 on a timeout). Optional:
    /// its failure puts `fallback` in its place.
    #[serde(default)]
    pub required: bool,
    /// At most the route's deadline (which also bounds it when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// The value an optional source's key gets when it fails (JSON; null when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<serde_json::Value>,
}

/// Bounds, documented in the README ("Composite routes").
pub const MAX_SOURCES: usize = 16;
pub const MAX_COMPOSITES: usize = 64;
pub const MAX_DEADLINE_MS: u64 = 60_000;
pub const DEFAULT_SOURCE_BYTES: usize = 1024 * 1024;
pub const DEFAULT_TOTAL_BYTES: usize = 4 * 1024 * 1024;
/// Envoy buffers a callout's answer whole; past this the filter would hold too much per request.
pub const MAX_TOTAL_BYTES: usize = 16 * 1024 * 1024;

fn default_source_bytes() -> usize {
    DEFAULT_SOURCE_BYTES
}

fn default_total_bytes() -> usize {
    DEFAULT_TOTAL_BYTES
}
