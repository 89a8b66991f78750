
use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
use envoy_types::pb::envoy::config::listener::v3::filter;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{DownstreamTlsContext, UpstreamTlsContext};
use prost::Message;

use super::super::{names, translate, Resources, TranslateOptions};
use crate::registry::Registry;
use crate::snapshot::{check_consistent, InconsistentSnapshot};
use crate::test_support::{registry_yaml, TestCerts};
use crate::resources::type_url;

fn options() -> TranslateOptions {
    crate::test_support::translate_options(8080)
}

fn registry(certs: &TestCerts, edge_extra: &str, venue_tls: &str) -> Registry {
    let (a_cert, a_key) = certs.leaf("a", &["a.test"], -1, 30);
    let (b_cert, b_key) = certs.leaf("b", &["b.test", "*.b.test"], -1, 30);
    let yaml = registry_yaml(&format!(
        "edge_tls:\n  port: 8443\n{edge_extra}  certificates:\n    - {{ server_names: [a.test], cert_file: {a_cert}, key_file: {a_key} }}\n    - {{ server_names: [b.test, '*.b.test'], cert_file: {b_cert}, key_file: {b_key}, require_client_certificate: true, client_ca_file: {} }}\nservices:\n  - name: venue\n    routes: [{{ prefix: /v }}]\n{venue_tls}",
        certs.ca_file
    ));
    Registry::parse("reg.yaml", &yaml).unwrap()
}

fn resources(registry: &Registry) -> Resources {
    translate(registry, &crate::registry::LiveInstances::new(), &[], &options()).unwrap()
}

fn hcm_of(chain: &envoy_types::pb::envoy::config::listener::v3::FilterChain) -> HttpConnectionManager {
    let Some(filter::ConfigType::TypedConfig(any)) = &chain.filters[0].config_type else { panic!("typed config") };
    HttpConnectionManager::decode(any.value.as_slice()).unwrap()
}

fn downstream(chain: &envoy_types::pb::envoy::config::listener::v3::FilterChain) -> DownstreamTlsContext {
    let Some(ConfigType::TypedConfig(any)) = &chain.transport_socket.as_ref().unwrap().config_type else { panic!("typed config") };
    assert_eq!(any.type_url, type_url::DOWNSTREAM_TLS_CONTEXT);
    DownstreamTlsContext::decode(any.value.as_slice()).unwrap()
}

#[test]
fn the_https_listener_picks_a_certificate_by_sni_from_sds_and_offers_h2_then_http11() {
    let certs = TestCerts::new("https");
    let resources = resources(&registry(&certs, "  hsts: { max_age_secs: 31536000, include_subdomains: true }\n", ""));
    let https = resources.listeners.iter().find(|l| l.name == names::HTTPS_LISTENER).unwrap();
    assert_eq!(https.listener_filters[0].name, "envoy.filters.listener.tls_inspector");
    let sni: Vec<_> = https.filter_chains.iter().map(|c| c.filter_chain_match.clone().unwrap().server_names).collect();
    assert_eq!(sni, vec![vec!["a.test".to_owned()], vec!["b.test".to_owned(), "*.b.test".to_owned()]]);
    let a = downstream(&https.filter_chains[0]);
    let common = a.common_tls_context.as_ref().unwrap();
    assert_eq!(common.alpn_protocols, vec!["h2", "http/1.1"]);
    assert_eq!(common.tls_certificate_sds_secret_configs[0].name, "edge_cert_a.test");
    assert!(common.tls_certificate_sds_secret_configs[0].sds_config.is_some(), "fetched over ADS");
    assert!(a.require_client_certificate.is_none());
    // The partner name requires a client certificate signed by its CA.
    let b = downstream(&https.filter_chains[1]);
    assert_eq!(b.require_client_certificate.map(|v| v.value), Some(true));
    assert!(format!("{:?}", b.common_tls_context.unwrap().validation_context_type).contains("edge_client_ca_b.test"));
    // No SNI: the first certificate.
    let default = https.default_filter_chain.as_ref().unwrap();
    assert!(default.filter_chain_match.is_none());
    assert_eq!(downstream(default).common_tls_context.unwrap().tls_certificate_sds_secret_configs[0].name, "edge_cert_a.test");
    // HSTS is the first filter, so every response, local replies included, passes it.
    let hcm = hcm_of(&https.filter_chains[0]);
    assert_eq!(hcm.http_filters[0].name, "stagedoor.set_strict-transport-security");
    let Some(envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType::TypedConfig(any)) =
        &hcm.http_filters[0].config_type
    else {
        panic!("typed config")
    };
    let text = String::from_utf8_lossy(&any.value);
    assert!(text.contains("max-age=31536000; includeSubDomains"), "{text}");
    // Secrets: both certificates and the partner CA, with the PEM inline.
    let secret_names: Vec<_> = resources.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(secret_names, vec!["edge_cert_a.test", "edge_cert_b.test", "edge_client_ca_b.test"]);
    assert!(format!("{:?}", resources.secrets[0]).contains("BEGIN PRIVATE KEY"));
    check_consistent(&resources).unwrap();
}

#[test]
fn plain_http_redirects_to_https_or_is_turned_off() {
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
    let certs = TestCerts::new("redirect");
    let redirecting = resources(&registry(&certs, "", ""));
    let http = redirecting.listeners.iter().find(|l| l.name == names::LISTENER).unwrap();
    let Some(RouteSpecifier::RouteConfig(routes)) = hcm_of(&http.filter_chains[0]).route_specifier else { panic!("inline redirect") };
    let text = format!("{routes:?}");
    assert!(text.contains("HttpsRedirect(true)") && text.contains("port_redirect: 8443"), "{text}");
    let off = resources(&registry(&certs, "  http: off\n", ""));
    assert_eq!(off.listeners.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), vec![names::HTTPS_LISTENER]);
    // No edge_tls: the plain listener serves, and no HSTS.
    let plain = Registry::parse("r", &registry_yaml("services:\n  - name: venue\n    routes: [{ prefix: /v }]\n")).unwrap();
    let plain = resources(&plain);
    assert_eq!(plain.listeners.len(), 1);
    assert!(plain.secrets.is_empty());
    assert!(!format!("{:?}", hcm_of(&plain.listeners[0].filter_chains[0])).contains("strict-transport-security"));
}

#[test]
fn a_service_with_tls_gets_an_upstream_tls_context_naming_its_ca_and_client_secrets() {
    let certs = TestCerts::new("upstream-ctx");
    let (cert, key) = certs.leaf("client", &["gateway"], -1, 30);
    let tls = format!("    tls: {{ ca_file: {}, sni: venue.internal, client_cert_file: {cert}, client_key_file: {key} }}\n", certs.ca_file);
    let resources = resources(&registry(&certs, "", &tls));
    let cluster = resources.clusters.iter().find(|c| c.name == "svc_venue").unwrap();
    let Some(ConfigType::TypedConfig(any)) = &cluster.transport_socket.as_ref().unwrap().config_type else { panic!("typed config") };
    let context = UpstreamTlsContext::decode(any.value.as_slice()).unwrap();
    assert_eq!(context.sni, "venue.internal");
    let text = format!("{:?}", context.common_tls_context.unwrap());
    assert!(text.contains("upstream_ca_venue") && text.contains("upstream_client_venue") && text.contains("venue.internal"), "{text}");
    assert!(resources.secrets.iter().any(|s| s.name == "upstream_ca_venue"));
    check_consistent(&resources).unwrap();
}

#[test]
fn a_listener_or_cluster_naming_a_missing_secret_is_an_inconsistent_snapshot() {
    let certs = TestCerts::new("consistency");
    let tls = format!("    tls: {{ ca_file: {} }}\n", certs.ca_file);
    let mut resources = resources(&registry(&certs, "", &tls));
    let mut without_cert = resources.clone();
    without_cert.secrets.retain(|s| s.name != "edge_cert_b.test");
    assert_eq!(
        check_consistent(&without_cert),
        Err(InconsistentSnapshot::MissingSecret { owner: "listener stagedoor_https chain sni_b.test".into(), secret: "edge_cert_b.test".into() })
    );
    resources.secrets.retain(|s| s.name != "upstream_ca_venue");
    assert_eq!(
        check_consistent(&resources),
        Err(InconsistentSnapshot::MissingSecret { owner: "cluster svc_venue".into(), secret: "upstream_ca_venue".into() })
    );
}
