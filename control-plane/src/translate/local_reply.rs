//! Envoy's own error replies (no route, and later upstream failures) in the gateway's JSON
//! error shape: {statusCode, error, message, code, requestId, timestamp}.

use envoy_types::pb::envoy::config::accesslog::v3::{
    access_log_filter, comparison_filter, AccessLogFilter, ComparisonFilter, ResponseFlagFilter, StatusCodeFilter,
};
use envoy_types::pb::envoy::config::core::v3::RuntimeUInt32;
use envoy_types::pb::envoy::config::core::v3::{data_source, substitution_format_string, DataSource, SubstitutionFormatString};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{LocalReplyConfig, ResponseMapper};
use envoy_types::pb::google::protobuf::UInt32Value;

/// The route's service name and timeout, from the route metadata `route.rs` writes.
const SERVICE: &str = "%METADATA(ROUTE:stagedoor:service)%";
const TIMEOUT_MS: &str = "%METADATA(ROUTE:stagedoor:timeout_ms)%";

pub fn json_errors() -> LocalReplyConfig {
    LocalReplyConfig {
        mappers: vec![
            mapper(&["NR"], None, "Not Found", "ROUTE_NOT_FOUND", "No route matches this path"),
            // The local rate limit's replies carry no response flag a mapper can match;
            // 429 is theirs alone (the Stagedoor filter never answers 429).
            with_filter(
                status_code_is(429),
                None,
                "Too Many Requests",
                "RATE_LIMITED",
                "Too many requests from this client; slow down",
            ),
            // The global limiter unreachable on a fail-closed route (its filter's status_on_error).
            mapper(&["RLSE"], Some(503), "Service Unavailable", "RATE_LIMITER_UNAVAILABLE", "Rate limiter unavailable; try again"),
            // Envoy's own 413 (a body a filter buffers passed the request's buffer limit,
            // before the filter saw it) in the shape the filter's validation 413 has; the
            // filter's own 413 matches too and keeps its status and code.
            with_filter(
                status_code_is(413),
                None,
                "Payload Too Large",
                "BODY_TOO_LARGE",
                "The request body is larger than this route accepts",
            ),
            mapper(&["UT"], Some(504), "Gateway Timeout", "GATEWAY_TIMEOUT", &format!("{SERVICE} service timeout after {TIMEOUT_MS}ms")),
            mapper(&["UH", "UF", "NC", "UO"], Some(503), "Service Unavailable", "SERVICE_UNAVAILABLE", &format!("{SERVICE} service is down")),
            mapper(&["UC", "UR", "UMSDR", "DPE", "UPE"], Some(502), "Bad Gateway", "BAD_GATEWAY", &format!("{SERVICE} service error")),
        ],
        ..Default::default()
    }
}

/// A mapper for replies carrying one of `flags`. Replies it does not match (the filter's
/// own JSON errors, `/health`) keep their body: there is deliberately no top-level format.
fn mapper(flags: &[&str], status: Option<u32>, error: &str, code: &str, message: &str) -> ResponseMapper {
    let filter = AccessLogFilter {
        filter_specifier: Some(access_log_filter::FilterSpecifier::ResponseFlagFilter(ResponseFlagFilter {
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
        })),
    };
    with_filter(filter, status, error, code, message)
}

fn status_code_is(code: u32) -> AccessLogFilter {
    AccessLogFilter {
        filter_specifier: Some(access_log_filter::FilterSpecifier::StatusCodeFilter(StatusCodeFilter {
            comparison: Some(ComparisonFilter {
                op: comparison_filter::Op::Eq as i32,
                value: Some(RuntimeUInt32 { default_value: code, runtime_key: String::from("stagedoor.local_reply.status") }),
            }),
        })),
    }
}

fn with_filter(filter: AccessLogFilter, status: Option<u32>, error: &str, code: &str, message: &str) -> ResponseMapper {
    ResponseMapper {
        filter: Some(filter),
        status_code: status.map(|value| UInt32Value { value }),
        body_format_override: Some(json_format(error, code, message)),
        ..Default::default()
    }
}

/// The body is a text template rather than a `Struct`: a protobuf map encodes in hash
/// order, which would make the listener's bytes, and so its version, differ run to run.
/// Every substituted value is JSON-safe: a status code, our own message with the route's
/// service name and timeout (registry-validated), a timestamp and the request id, which
/// Envoy always generates itself at the edge (see `listener.rs`).
fn json_format(error: &str, code: &str, message: &str) -> SubstitutionFormatString {
    let template = format!(
        concat!(
            r#"{{"statusCode":%RESPONSE_CODE%,"error":"{error}","message":"{message}","#,
            r#""code":"{code}","requestId":"%REQ(X-REQUEST-ID)%","timestamp":"%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)%"}}"#
        ),
        error = error,
        code = code,
        message = message
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
