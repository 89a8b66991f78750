//! The reply to a request that fails validation, in the gateway's JSON error shape with a
//! `details` list for 422.

use serde::Serialize;

use super::ValidationFailure;
use crate::reply::iso8601;
use crate::schema::Violation;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ValidationBody<'a> {
    status_code: u16,
    error: &'static str,
    message: &'a str,
    code: &'static str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    details: &'a [Violation],
    request_id: &'a str,
    timestamp: String,
}

/// (status, body) for a failed validation.
pub fn validation_reply(failure: &ValidationFailure, request_id: &str, now_ms: i64) -> (u16, String) {
    let (status, error, code, message, details): (u16, &str, &str, String, &[Violation]) = match failure {
        ValidationFailure::TooLarge { limit } => (
            413,
            "Payload Too Large",
            "BODY_TOO_LARGE",
            format!("The request body is larger than this route accepts ({limit} bytes)"),
            &[],
        ),
        ValidationFailure::NotJson(reason) => {
            (400, "Bad Request", "BODY_NOT_JSON", format!("The request body is not valid JSON: {reason}"), &[])
        }
        ValidationFailure::BadQuery(error) => (400, "Bad Request", "QUERY_UNREADABLE", error.to_string(), &[]),
        ValidationFailure::Invalid(violations) => {
            (422, "Unprocessable Entity", "VALIDATION_FAILED", String::from("Request validation failed"), violations)
        }
    };
    let body = ValidationBody { status_code: status, error, message: &message, code, details, request_id, timestamp: iso8601(now_ms) };
    // Serializing strings and numbers cannot fail; an empty body still carries the status.
    (status, serde_json::to_string(&body).unwrap_or_default())
}
