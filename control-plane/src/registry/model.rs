//! The registry file's shape. Field names are the file's; every field is documented in the
//! README ("Registry format").

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    pub services: Vec<ServiceSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Lower-case name, `[a-z][a-z0-9-]*`; the Envoy cluster is `svc_<name>`.
    pub name: String,
    /// The path prefixes the gateway routes to this service.
    pub routes: Vec<RouteSpec>,
    /// Instances known from the file; live instances from Redis are added to these.
    #[serde(default)]
    pub instances: Vec<InstanceSpec>,
    /// Paths that need no token: exact, or a prefix written with a trailing `/*`.
    #[serde(default)]
    pub public_paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Matched on whole segments: `/api/v1/venues` takes `/api/v1/venues` and
    /// `/api/v1/venues/...`, never `/api/v1/venuesX`.
    pub prefix: String,
    /// What the matched prefix becomes on the way to the upstream; absent means the path
    /// goes through unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_prefix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    /// An IP address or a DNS name.
    pub address: String,
    pub port: u16,
}
