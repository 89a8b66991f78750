//! Names of the resources Stagedoor publishes, in one place.

pub const LISTENER: &str = "stagedoor_http";
/// The HTTPS listener, when the registry has `edge_tls`.
pub const HTTPS_LISTENER: &str = "stagedoor_https";
pub const ROUTE_CONFIG: &str = "stagedoor_routes";
pub const VIRTUAL_HOST: &str = "stagedoor";
pub const FILTER_NAME: &str = "stagedoor";
pub const WASM_VM_ID: &str = "stagedoor";
/// The ECDS resource holding the filter's config, and the name of the HTTP filter that
/// refers to it (Envoy subscribes by the filter's name).
pub const FILTER_EXTENSION_CONFIG: &str = "stagedoor";

/// The Envoy cluster (and EDS service name) of a registry service.
pub fn cluster(service: &str) -> String {
    // The filter's composite routes call clusters by this name too: one owner.
    stagedoor_filter_core::config::service_cluster(service)
}

/// The static cluster through which filters poll the control plane's revocation feed.
pub const CONTROL_PLANE_CLUSTER: &str = "stagedoor_control_plane";
pub const REVOCATION_FEED_PATH: &str = "/v1/revocations";
/// Where filters post the kids of JWKS issuers that no key has (crate::jwks).
pub const KEY_REPORT_PATH: &str = "/v1/keys/unknown";

/// The static cluster to the token endpoint (refresh and logout, `stagedoor serve
/// --token-endpoint`), and its name as a service in the filter's config (not a valid
/// registry service name, so no service can take it).
pub const TOKEN_ENDPOINT_CLUSTER: &str = "stagedoor_token_endpoint";
pub const TOKEN_ENDPOINT_SERVICE: &str = "stagedoor:token-endpoint";

/// Route metadata namespace the local-reply formats read (`%METADATA(ROUTE:stagedoor:...)%`).
pub const METADATA_NAMESPACE: &str = "stagedoor";
pub const CORS_FILTER: &str = "envoy.filters.http.cors";

/// The static secrets every Envoy's bootstrap defines (envoy/bootstrap.yaml): its own
/// client certificate and the CA. Dynamic clusters name them, so one published cluster
/// serves every node with that node's own certificate.
pub const ENVOY_IDENTITY_SECRET: &str = "stagedoor_envoy_identity";
pub const CA_SECRET: &str = "stagedoor_ca";

/// SDS secrets: an edge certificate by the first SNI name it serves, its partner CA, and a
/// service's upstream CA and client certificate.
pub fn edge_certificate_secret(first_server_name: &str) -> String {
    format!("edge_cert_{first_server_name}")
}
pub fn edge_client_ca_secret(first_server_name: &str) -> String {
    format!("edge_client_ca_{first_server_name}")
}
pub fn upstream_ca_secret(service: &str) -> String {
    format!("upstream_ca_{service}")
}
pub fn upstream_client_secret(service: &str) -> String {
    format!("upstream_client_{service}")
}
