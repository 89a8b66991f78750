//! The control-plane cluster's mutual TLS: the Envoy shows its own certificate (a static
//! secret from its bootstrap) and accepts only a server certificate signed by the CA and
//! carrying the control plane's URI SAN, which no client certificate has.

use envoy_types::pb::envoy::config::core::v3::{transport_socket, TransportSocket};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::{
    CombinedCertificateValidationContext, ValidationContextType,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    subject_alt_name_matcher::SanType, CertificateValidationContext, CommonTlsContext, SdsSecretConfig,
    SubjectAltNameMatcher, UpstreamTlsContext,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};

use super::any::to_any;
use super::names;
use crate::tls::identity::CONTROL_PLANE_URI;

pub fn transport_socket() -> TransportSocket {
    let static_secret = |name: &str| SdsSecretConfig { name: name.to_owned(), ..Default::default() };
    let control_plane = SubjectAltNameMatcher {
        san_type: SanType::Uri as i32,
        matcher: Some(StringMatcher { match_pattern: Some(MatchPattern::Exact(CONTROL_PLANE_URI.to_owned())), ..Default::default() }),
        ..Default::default()
    };
    let tls = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![static_secret(names::ENVOY_IDENTITY_SECRET)],
            validation_context_type: Some(ValidationContextType::CombinedValidationContext(CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: vec![control_plane],
                    ..Default::default()
                }),
                validation_context_sds_secret_config: Some(static_secret(names::CA_SECRET)),
                ..Default::default()
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: String::from("envoy.transport_sockets.tls"),
        config_type: Some(transport_socket::ConfigType::TypedConfig(to_any(&tls))),
    }
}
