//! Names of the resources Stagedoor publishes, in one place.

pub const LISTENER: &str = "stagedoor_http";
pub const ROUTE_CONFIG: &str = "stagedoor_routes";
pub const VIRTUAL_HOST: &str = "stagedoor";
pub const FILTER_NAME: &str = "stagedoor";
pub const WASM_VM_ID: &str = "stagedoor";

/// The Envoy cluster (and EDS service name) of a registry service.
pub fn cluster(service: &str) -> String {
    format!("svc_{service}")
}
