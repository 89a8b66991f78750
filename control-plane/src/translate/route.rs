//! RDS: one virtual host; `/health` answered by Envoy; each registry route to its cluster,
//! longest prefix first because Envoy takes the first match. A path no route takes gets
//! Envoy's 404, which the local-reply config turns into the JSON error shape.

use envoy_types::pb::envoy::config::core::v3::{data_source, header_value_option, DataSource, HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::config::route::v3::{
    route, route_action, route_match, DirectResponseAction, Route, RouteAction, RouteConfiguration, RouteMatch,
    VirtualHost,
};

use super::names;
use crate::registry::Registry;

pub fn route_configuration(registry: &Registry) -> RouteConfiguration {
    let mut service_routes: Vec<(&str, Option<&str>, &str)> = registry
        .services
        .values()
        .flat_map(|svc| {
            svc.routes
                .iter()
                .map(move |r| (r.prefix.as_str(), r.upstream_prefix.as_deref(), svc.name.as_str()))
        })
        .collect();
    service_routes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(b.0)));

    let mut routes = vec![health_route()];
    routes.extend(
        service_routes
            .into_iter()
            .map(|(prefix, upstream_prefix, service)| service_route(prefix, upstream_prefix, service)),
    );
    RouteConfiguration {
        name: names::ROUTE_CONFIG.to_owned(),
        virtual_hosts: vec![VirtualHost {
            name: names::VIRTUAL_HOST.to_owned(),
            domains: vec![String::from("*")],
            routes,
            // Set by Envoy from what it saw, replacing any client copy (the filter removes
            // those too): cheaper here than as host calls from the filter.
            request_headers_to_add: vec![
                overwrite("x-gateway-forwarded", "true"),
                overwrite("x-original-ip", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
            ],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn service_route(prefix: &str, upstream_prefix: Option<&str>, service: &str) -> Route {
    Route {
        name: format!("{service}:{prefix}"),
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::PathSeparatedPrefix(prefix.to_owned())),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(names::cluster(service))),
            prefix_rewrite: upstream_prefix.map(str::to_owned).unwrap_or_default(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn health_route() -> Route {
    Route {
        name: String::from("gateway:/health"),
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Path(String::from("/health"))),
            ..Default::default()
        }),
        action: Some(route::Action::DirectResponse(DirectResponseAction {
            status: 200,
            body: Some(DataSource {
                specifier: Some(data_source::Specifier::InlineString(String::from(
                    r#"{"status":"ok","service":"stagedoor"}"#,
                ))),
                ..Default::default()
            }),
            ..Default::default()
        })),
        response_headers_to_add: vec![json_content_type()],
        ..Default::default()
    }
}

pub fn json_content_type() -> HeaderValueOption {
    overwrite("content-type", "application/json")
}

fn overwrite(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue { key: key.to_owned(), value: value.to_owned(), ..Default::default() }),
        append_action: header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}
