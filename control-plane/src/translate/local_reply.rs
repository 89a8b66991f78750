//! Envoy's own error replies (no route, and later upstream failures) in the gateway's JSON
//! error shape: {statusCode, error, message, code, requestId, timestamp}.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::accesslog::v3::{access_log_filter, AccessLogFilter, ResponseFlagFilter};
use envoy_types::pb::envoy::config::core::v3::{data_source, substitution_format_string, DataSource, SubstitutionFormatString};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{LocalReplyConfig, ResponseMapper};
use envoy_types::pb::google::protobuf::{value, Struct, Value};

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

fn json_format(error: &str, code: &str) -> SubstitutionFormatString {
    let fields: HashMap<String, Value> = [
        ("statusCode", "%RESPONSE_CODE%"),
        ("error", error),
        ("message", "%LOCAL_REPLY_BODY%"),
        ("code", code),
        ("requestId", "%REQ(X-REQUEST-ID)%"),
        ("timestamp", "%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)%"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Value { kind: Some(value::Kind::StringValue(v.to_owned())) }))
    .collect();
    SubstitutionFormatString {
        format: Some(substitution_format_string::Format::JsonFormat(Struct { fields })),
        content_type: String::from("application/json"),
        ..Default::default()
    }
}
