//! LDS: one HTTP listener whose connection manager normalizes paths, runs the Stagedoor
//! filter, then the router. The filter's config is not in the listener: the listener names
//! it and Envoy fetches it over ECDS (see `extension_config.rs`), so a policy edit leaves the
//! listener, its sockets and its connections alone.

use envoy_types::pb::envoy::config::core::v3::{http_protocol_options, HttpProtocolOptions};
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager, HttpFilter, Rds,
    http_connection_manager::InternalAddressConfig,
};
use envoy_types::pb::envoy::config::core::v3::ExtensionConfigSource;
use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use prost::Name;

use super::cluster::{ads_source, socket};
use crate::registry::Registry;
use super::{local_reply, names, to_any, TranslateOptions};

/// Filter order: CORS answers preflights before anything else; the rate limit refuses a
/// flood before a token is checked; then Stagedoor, response stripping, the router.
pub fn http_listener(options: &TranslateOptions, registry: &Registry) -> Listener {
    Listener {
        name: names::LISTENER.to_owned(),
        address: Some(socket(&options.listen.ip().to_string(), options.listen.port())),
        filter_chains: vec![FilterChain { filters: vec![connection_manager_filter(&connection_manager(registry, None))], ..Default::default() }],
        ..Default::default()
    }
}

/// The gateway's connection manager; given an HSTS header, it goes on every response,
/// local replies included (its filter runs first, so every reply passes through it).
pub fn connection_manager(registry: &Registry, hsts: Option<String>) -> HttpConnectionManager {
    let mut http_filters = Vec::new();
    if let Some(value) = hsts {
        http_filters.push(response_header_added("strict-transport-security", &value));
    }
    if registry.cors.is_some() {
        http_filters.push(super::cors::filter());
    }
    if let Some(spec) = &registry.rate_limit {
        http_filters.push(super::rate_limit::filter(spec));
    }
    http_filters.push(stagedoor_filter());
    // After Stagedoor: the global limits count the identity it verified.
    http_filters.extend(super::rate_limit_global::filters(registry.global_rate_limits.as_ref()));
    // After both: counts only what the global limiter admitted or could not be asked about.
    http_filters.extend(super::rate_limit_fallback::filter(registry.global_rate_limits.as_ref()));
    http_filters.extend([super::response_strip::response_header_filter(), router_filter()]);
    HttpConnectionManager {
        stat_prefix: String::from("stagedoor"),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads_source()),
            route_config_name: names::ROUTE_CONFIG.to_owned(),
        })),
        http_filters,
        // Public-path and service matching in the filter rely on Envoy handing it a
        // canonical path: RFC 3986 normalization (dot segments, backslashes), merged
        // slashes, and escaped slashes refused rather than guessed at.
        normalize_path: Some(BoolValue { value: true }),
        merge_slashes: true,
        path_with_escaped_slashes_action:
            http_connection_manager::PathWithEscapedSlashesAction::RejectRequest as i32,
        // x_tenant_id must never reach an upstream as a look-alike of x-tenant-id.
        common_http_protocol_options: Some(HttpProtocolOptions {
            headers_with_underscores_action: http_protocol_options::HeadersWithUnderscoresAction::DropHeader as i32,
            ..Default::default()
        }),
        // The downstream address is the peer Envoy saw, never a client-supplied header; and
        // with no address counted as internal, every request is an edge request: Envoy
        // strips client x-envoy-* headers and generates x-request-id itself.
        use_remote_address: Some(BoolValue { value: true }),
        // An empty list would mean Envoy's defaults (private and loopback ranges), so it
        // names one address no peer can have.
        internal_address_config: Some(InternalAddressConfig {
            unix_sockets: false,
            cidr_ranges: vec![CidrRange { address_prefix: String::from("255.255.255.255"), prefix_len: Some(UInt32Value { value: 32 }) }],
        }),
        always_set_request_id_in_response: true,
        local_reply_config: Some(local_reply::json_errors()),
        ..Default::default()
    }
}

pub fn connection_manager_filter(hcm: &HttpConnectionManager) -> Filter {
    Filter {
        name: String::from("envoy.filters.network.http_connection_manager"),
        config_type: Some(filter::ConfigType::TypedConfig(to_any(hcm))),
    }
}

/// A header set (replacing any upstream copy) on every response.
fn response_header_added(name: &str, value: &str) -> HttpFilter {
    use envoy_types::pb::envoy::config::common::mutation_rules::v3::{header_mutation, HeaderMutation as Mutation};
    use envoy_types::pb::envoy::config::core::v3::{header_value_option::HeaderAppendAction, HeaderValue, HeaderValueOption};
    use envoy_types::pb::envoy::extensions::filters::http::header_mutation::v3::{HeaderMutation, Mutations};
    let set = Mutation {
        action: Some(header_mutation::Action::Append(HeaderValueOption {
            header: Some(HeaderValue { key: name.to_owned(), value: value.to_owned(), ..Default::default() }),
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            ..Default::default()
        })),
    };
    let config = HeaderMutation { mutations: Some(Mutations { response_mutations: vec![set], ..Default::default() }), ..Default::default() };
    HttpFilter {
        name: format!("stagedoor.set_{name}"),
        config_type: Some(http_filter::ConfigType::TypedConfig(to_any(&config))),
        ..Default::default()
    }
}

/// The Stagedoor filter by reference: its config (the wasm plugin with the policy) is the
/// ECDS resource of the same name. No default config, and warming on: a listener never
/// serves before Envoy holds an accepted filter config, and if the first fetch fails Envoy
/// keeps the filter "missing", which answers every request 500 (fail closed, never open).
fn stagedoor_filter() -> HttpFilter {
    HttpFilter {
        name: names::FILTER_EXTENSION_CONFIG.to_owned(),
        config_type: Some(http_filter::ConfigType::ConfigDiscovery(ExtensionConfigSource {
            config_source: Some(ads_source()),
            default_config: None,
            apply_default_config_without_warming: false,
            type_urls: vec![Wasm::type_url()],
        })),
        ..Default::default()
    }
}

/// Without dynamic stats: the router would look up per-response-code and per-zone cluster
/// counters by name on every request, which the bootstrap's stats_matcher drops anyway.
pub fn router_filter() -> HttpFilter {
    let router = Router { dynamic_stats: Some(BoolValue { value: false }), ..Default::default() };
    HttpFilter {
        name: String::from("envoy.filters.http.router"),
        config_type: Some(http_filter::ConfigType::TypedConfig(to_any(&router))),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn the_router_looks_up_no_dynamic_stats() {
        let Some(http_filter::ConfigType::TypedConfig(any)) = router_filter().config_type else {
            panic!("the router has a typed config");
        };
        let router = Router::decode(any.value.as_slice()).unwrap();
        assert_eq!(router.dynamic_stats.map(|b| b.value), Some(false), "9,400 instructions per request (bench/README.md)");
    }
}
