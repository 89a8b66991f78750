//! LDS: one HTTP listener whose connection manager normalizes paths, runs the Stagedoor
//! filter, then the router.

use envoy_types::pb::envoy::config::core::v3::{http_protocol_options, HttpProtocolOptions};
use envoy_types::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, HttpConnectionManager, HttpFilter, Rds,
    http_connection_manager::InternalAddressConfig,
};
use envoy_types::pb::envoy::config::core::v3::{async_data_source, data_source, AsyncDataSource, DataSource};
use envoy_types::pb::envoy::extensions::wasm::v3::{FailurePolicy, PluginConfig, VmConfig};
use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::google::protobuf::{BoolValue, StringValue, UInt32Value};
use stagedoor_filter_core::config::FilterConfig;

use super::cluster::{ads_source, socket};
use crate::registry::Registry;
use super::{local_reply, names, to_any, TranslateOptions};

/// Filter order: CORS answers preflights before anything else; the rate limit refuses a
/// flood before a token is checked; then Stagedoor, response stripping, the router.
pub fn http_listener(options: &TranslateOptions, config: &FilterConfig, registry: &Registry) -> Listener {
    let mut http_filters = Vec::new();
    if registry.cors.is_some() {
        http_filters.push(super::cors::filter());
    }
    if let Some(spec) = &registry.rate_limit {
        http_filters.push(super::rate_limit::filter(spec));
    }
    http_filters.extend([stagedoor_filter(options, config), response_header_filter(), router_filter()]);
    let hcm = HttpConnectionManager {
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
    };
    Listener {
        name: names::LISTENER.to_owned(),
        address: Some(socket(&options.listen.ip().to_string(), options.listen.port())),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: String::from("envoy.filters.network.http_connection_manager"),
                config_type: Some(filter::ConfigType::TypedConfig(to_any(&hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn stagedoor_filter(options: &TranslateOptions, config: &FilterConfig) -> HttpFilter {
    let wasm = Wasm {
        config: Some(PluginConfig {
            name: names::FILTER_NAME.to_owned(),
            root_id: names::FILTER_NAME.to_owned(),
            vm: Some(envoy_types::pb::envoy::extensions::wasm::v3::plugin_config::Vm::VmConfig(VmConfig {
                vm_id: names::WASM_VM_ID.to_owned(),
                runtime: String::from("envoy.wasm.runtime.v8"),
                code: Some(AsyncDataSource {
                    specifier: Some(async_data_source::Specifier::Local(DataSource {
                        specifier: Some(data_source::Specifier::Filename(options.wasm_path.clone())),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            })),
            configuration: Some(to_any(&StringValue { value: config.to_json() })),
            // A webhook is held at the headers (StopIteration) while its body arrives for
            // the signature check; without this Envoy would stop all iteration and never
            // hand the filter the body.
            allow_on_headers_stop_iteration: Some(BoolValue { value: true }),
            // If the VM ever fails at run time, the request at hand gets a 503 and the next
            // one a fresh VM (after Envoy's reload backoff), instead of every request on the
            // worker failing until Envoy restarts (FAIL_CLOSED, the default).
            failure_policy: FailurePolicy::FailReload as i32,
            ..Default::default()
        }),
    };
    HttpFilter {
        name: String::from("envoy.filters.http.wasm"),
        config_type: Some(http_filter::ConfigType::TypedConfig(to_any(&wasm))),
        ..Default::default()
    }
}

/// Strips internal headers from upstream responses natively: cheaper than reading every
/// response's headers into the wasm VM. The lists are the filter core's.
fn response_header_filter() -> HttpFilter {
    use envoy_types::pb::envoy::config::common::mutation_rules::v3::{header_mutation, HeaderMutation as Mutation};
    use envoy_types::pb::envoy::extensions::filters::http::header_mutation::v3::{HeaderMutation, Mutations};
    use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
    use stagedoor_filter_core::headers::{response_removed_headers, RESPONSE_REMOVED_PREFIX};

    let mut response_mutations = vec![Mutation {
        action: Some(header_mutation::Action::RemoveOnMatch(header_mutation::RemoveOnMatch {
            key_matcher: Some(StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Prefix(RESPONSE_REMOVED_PREFIX.to_owned())),
                ignore_case: true,
            }),
        })),
    }];
    response_mutations.extend(response_removed_headers().map(|name| Mutation {
        action: Some(header_mutation::Action::Remove(name.to_owned())),
    }));
    let config = HeaderMutation {
        mutations: Some(Mutations { response_mutations, ..Default::default() }),
        ..Default::default()
    };
    HttpFilter {
        name: String::from("envoy.filters.http.header_mutation"),
        config_type: Some(http_filter::ConfigType::TypedConfig(to_any(&config))),
        ..Default::default()
    }
}

fn router_filter() -> HttpFilter {
    HttpFilter {
        name: String::from("envoy.filters.http.router"),
        config_type: Some(http_filter::ConfigType::TypedConfig(to_any(&Router::default()))),
        ..Default::default()
    }
}
