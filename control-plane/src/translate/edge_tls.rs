//! HTTPS at the edge and TLS to upstreams. Certificates are never in a listener or cluster:
//! each is an SDS secret the listener or cluster names (served over ADS), so a rotated
//! certificate changes one secret, and Envoy uses it for the next handshake without
//! touching the listener, its sockets or its connections.

use envoy_types::pb::envoy::config::core::v3::{data_source, transport_socket, DataSource, TransportSocket};
use envoy_types::pb::envoy::config::listener::v3::{
    listener_filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
};
use envoy_types::pb::envoy::config::route::v3::{
    redirect_action, route, route_match, RedirectAction, Route, RouteConfiguration, RouteMatch, VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, HttpConnectionManager,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    common_tls_context::ValidationContextType, secret, CertificateValidationContext, CommonTlsContext, DownstreamTlsContext,
    SdsSecretConfig, Secret, TlsCertificate, UpstreamTlsContext,
};
use envoy_types::pb::google::protobuf::BoolValue;

use super::cluster::{ads_source, socket};
use super::listener::{connection_manager, connection_manager_filter, router_filter};
use super::{names, to_any, TranslateOptions};
use crate::registry::edge::{EdgeCertificate, EdgeTls, PemPair, PlainHttp, UpstreamTls};
use crate::registry::Registry;

/// The listeners: HTTP (serving, or redirecting to HTTPS, or absent) and HTTPS when the
/// registry has `edge_tls`.
pub fn listeners(options: &TranslateOptions, registry: &Registry) -> Vec<Listener> {
    let Some(edge) = &registry.edge_tls else {
        return vec![super::listener::http_listener(options, registry)];
    };
    let mut listeners = vec![https_listener(options, registry, edge)];
    if edge.http == PlainHttp::Redirect {
        listeners.push(redirect_listener(options, edge.port));
    }
    listeners
}

/// Every secret the listeners and clusters name, in name order.
pub fn secrets(registry: &Registry) -> Vec<Secret> {
    let mut secrets = Vec::new();
    for cert in registry.edge_tls.iter().flat_map(|e| &e.certificates) {
        let first = first_name(cert);
        secrets.push(certificate_secret(names::edge_certificate_secret(first), &cert.pair));
        if let Some(ca) = &cert.client_ca_pem {
            secrets.push(ca_secret(names::edge_client_ca_secret(first), ca));
        }
    }
    for (service, tls) in &registry.upstream_tls {
        secrets.push(ca_secret(names::upstream_ca_secret(service), &tls.ca_pem));
        if let Some(pair) = &tls.client {
            secrets.push(certificate_secret(names::upstream_client_secret(service), pair));
        }
    }
    secrets.sort_by(|a, b| a.name.cmp(&b.name));
    secrets
}

/// The TLS a service's cluster speaks to its instances.
pub fn upstream_socket(service: &str, tls: &UpstreamTls) -> TransportSocket {
    let mut context = UpstreamTlsContext {
        sni: tls.sni.clone().unwrap_or_default(),
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: tls.client.iter().map(|_| sds(names::upstream_client_secret(service))).collect(),
            validation_context_type: Some(ValidationContextType::ValidationContextSdsSecretConfig(sds(names::upstream_ca_secret(service)))),
            ..Default::default()
        }),
        ..Default::default()
    };
    // The instance's certificate must carry the SNI name: the CA alone would accept any
    // host it signed for. Envoy checks it when `auto_sni_san_validation` is on; with a
    // fixed `sni` the name is also matched below.
    if let (Some(sni), Some(common)) = (&tls.sni, context.common_tls_context.as_mut()) {
        use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::CombinedCertificateValidationContext;
        use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{subject_alt_name_matcher::SanType, SubjectAltNameMatcher};
        use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
        let san = SubjectAltNameMatcher {
            san_type: SanType::Dns as i32,
            matcher: Some(StringMatcher { match_pattern: Some(MatchPattern::Exact(sni.clone())), ..Default::default() }),
            ..Default::default()
        };
        common.validation_context_type = Some(ValidationContextType::CombinedValidationContext(CombinedCertificateValidationContext {
            default_validation_context: Some(CertificateValidationContext { match_typed_subject_alt_names: vec![san], ..Default::default() }),
            validation_context_sds_secret_config: Some(sds(names::upstream_ca_secret(service))),
            ..Default::default()
        }));
    }
    tls_socket(to_any(&context))
}

fn https_listener(options: &TranslateOptions, registry: &Registry, edge: &EdgeTls) -> Listener {
    let hcm = connection_manager(registry, edge.hsts.as_ref().map(|h| h.header_value()));
    let chain = |cert: &EdgeCertificate, match_sni: bool| FilterChain {
        name: format!("{}{}", if match_sni { "sni_" } else { "default_" }, first_name(cert)),
        filter_chain_match: match_sni
            .then(|| FilterChainMatch { server_names: cert.server_names.clone(), ..Default::default() }),
        transport_socket: Some(downstream_socket(cert)),
        filters: vec![connection_manager_filter(&hcm)],
        ..Default::default()
    };
    let tls_inspector = ListenerFilter {
        name: String::from("envoy.filters.listener.tls_inspector"),
        config_type: Some(listener_filter::ConfigType::TypedConfig(to_any(&TlsInspector::default()))),
        ..Default::default()
    };
    Listener {
        name: names::HTTPS_LISTENER.to_owned(),
        address: Some(socket(&options.listen.ip().to_string(), edge.port)),
        listener_filters: vec![tls_inspector],
        filter_chains: edge.certificates.iter().map(|c| chain(c, true)).collect(),
        // A client without SNI, or with a name no certificate lists, gets the first one.
        default_filter_chain: edge.certificates.first().map(|c| chain(c, false)),
        ..Default::default()
    }
}

/// TLS 1.2+ and the ciphers are Envoy's server defaults; ALPN offers h2, then http/1.1.
fn downstream_socket(cert: &EdgeCertificate) -> TransportSocket {
    let first = first_name(cert);
    let context = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![sds(names::edge_certificate_secret(first))],
            alpn_protocols: vec![String::from("h2"), String::from("http/1.1")],
            validation_context_type: cert
                .client_ca_pem
                .as_ref()
                .map(|_| ValidationContextType::ValidationContextSdsSecretConfig(sds(names::edge_client_ca_secret(first)))),
            ..Default::default()
        }),
        require_client_certificate: cert.require_client_certificate.then_some(BoolValue { value: true }),
        ..Default::default()
    };
    tls_socket(to_any(&context))
}

/// Plain HTTP answers every request with a 301 to the same path on the HTTPS port.
fn redirect_listener(options: &TranslateOptions, https_port: u16) -> Listener {
    let redirect = RouteConfiguration {
        name: String::from("stagedoor_https_redirect"),
        virtual_hosts: vec![VirtualHost {
            name: String::from("https_redirect"),
            domains: vec![String::from("*")],
            routes: vec![Route {
                r#match: Some(RouteMatch { path_specifier: Some(route_match::PathSpecifier::Prefix(String::from("/"))), ..Default::default() }),
                action: Some(route::Action::Redirect(RedirectAction {
                    scheme_rewrite_specifier: Some(redirect_action::SchemeRewriteSpecifier::HttpsRedirect(true)),
                    port_redirect: u32::from(https_port),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let hcm = HttpConnectionManager {
        stat_prefix: String::from("stagedoor_redirect"),
        route_specifier: Some(RouteSpecifier::RouteConfig(redirect)),
        http_filters: vec![router_filter()],
        ..Default::default()
    };
    Listener {
        name: names::LISTENER.to_owned(),
        address: Some(socket(&options.listen.ip().to_string(), options.listen.port())),
        filter_chains: vec![FilterChain { filters: vec![connection_manager_filter(&hcm)], ..Default::default() }],
        ..Default::default()
    }
}

fn first_name(cert: &EdgeCertificate) -> &str {
    cert.server_names.first().map(String::as_str).unwrap_or_default()
}

fn sds(name: String) -> SdsSecretConfig {
    SdsSecretConfig { name, sds_config: Some(ads_source()) }
}

fn inline(text: &str) -> Option<DataSource> {
    Some(DataSource { specifier: Some(data_source::Specifier::InlineString(text.to_owned())), ..Default::default() })
}

fn certificate_secret(name: String, pair: &PemPair) -> Secret {
    Secret {
        name,
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: inline(&pair.cert_pem),
            private_key: inline(&pair.key_pem),
            ..Default::default()
        })),
    }
}

fn ca_secret(name: String, ca_pem: &str) -> Secret {
    Secret {
        name,
        r#type: Some(secret::Type::ValidationContext(CertificateValidationContext { trusted_ca: inline(ca_pem), ..Default::default() })),
    }
}

fn tls_socket(config: envoy_types::pb::google::protobuf::Any) -> TransportSocket {
    TransportSocket { name: String::from("envoy.transport_sockets.tls"), config_type: Some(transport_socket::ConfigType::TypedConfig(config)) }
}

#[cfg(test)]
#[path = "edge_tls_tests.rs"]
mod tests;
