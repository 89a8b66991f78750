//! Envoy's own error replies (no route, and later upstream failures) in the gateway's JSON
//! error shape: {statusCode, error, message, code, requestId, timestamp}.

use envoy_types::pb::envoy::config::accesslog::v3::{access_log_filter, AccessLogFilter, ResponseFlagFilter};
use envoy_types::pb::envoy::config::core::v3::{data_source, substitution_format_string, DataSource, SubstitutionFormatString};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{LocalReplyConfig, ResponseMapper};

pub fn json_errors() -> LocalReplyConfig {
    LocalReplyConfig {
        mappers: vec![mapper(&["NR"], "Not Found", "ROUTE_NOT_FOUND", "No route matches this path")],
        ..Default::default()
    }
}

/// A mapper for replies carrying one of `flags`. Replies it does not match (the filter's
/// own JSON errors, `/health`) keep their body: there is deliberately no top-level format.
fn mapper(flags: &[&str], error: &str, code: &str, message: &str) -> ResponseMapper {
    ResponseMapper {
        filter: Some(AccessLogFilter {
            filter_specifier: Some(access_log_filter::FilterSpecifier::ResponseFlagFilter(ResponseFlagFilter {
                flags: flags.iter().map(|f| (*f).to_owned()).collect(),
            })),
        }),
        body: Some(DataSource {
            specifier: Some(data_source::Specifier::InlineString(message.to_owned())),
            ..Default::default()
        }),
        body_format_override: Some(json_format(error, code)),
        ..Default::default()
    }
}

/// The body is a text template rather than a `Struct`: a protobuf map encodes in hash
/// order, which would make the listener's bytes, and so its version, differ run to run.
/// Every substituted value is JSON-safe: a status code, our own message, a timestamp and
/// the request id, which Envoy always generates itself at the edge (see `listener.rs`).
fn json_format(error: &str, code: &str) -> SubstitutionFormatString {
    let template = format!(
        concat!(
            r#"{{"statusCode":%RESPONSE_CODE%,"error":"{error}","message":"%LOCAL_REPLY_BODY%","#,
            r#""code":"{code}","requestId":"%REQ(X-REQUEST-ID)%","timestamp":"%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)%"}}"#
        ),
        error = error,
        code = code
    );
    SubstitutionFormatString {
        format: Some(substitution_format_string::Format::TextFormatSource(DataSource {
            specifier: Some(data_source::Specifier::InlineString(template)),
            ..Default::default()
        })),
        content_type: String::from("application/json"),
        ..Default::default()
    }
}
