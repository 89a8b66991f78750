//! Type URLs of the resources Stagedoor serves.

pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// ECDS: an HTTP filter's config, fetched by the filter's name.
pub const EXTENSION_CONFIG: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
/// SDS: certificates and CAs the listeners and clusters name.
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
pub const DOWNSTREAM_TLS_CONTEXT: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
pub const UPSTREAM_TLS_CONTEXT: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
pub const HTTP_CONNECTION_MANAGER: &str =
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// Short name for logs and status.
pub fn short(type_url: &str) -> &str {
    match type_url {
        CLUSTER => "CDS",
        ENDPOINT => "EDS",
        LISTENER => "LDS",
        ROUTE => "RDS",
        EXTENSION_CONFIG => "ECDS",
        SECRET => "SDS",
        other => other,
    }
}

/// The served types, in the order status columns show them.
pub const SERVED: [&str; 6] = [CLUSTER, ENDPOINT, LISTENER, ROUTE, EXTENSION_CONFIG, SECRET];

/// The `'static` constant for a served type URL, None for any other.
pub fn known(type_url: &str) -> Option<&'static str> {
    SERVED.iter().copied().find(|served| *served == type_url)
}

/// The type URL of a short name (CDS, ...), None for any other.
pub fn from_short(short_name: &str) -> Option<&'static str> {
    SERVED.iter().copied().find(|served| short(served) == short_name)
}
