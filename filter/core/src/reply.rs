//! The gateway's error replies: {statusCode, error, message, code, requestId, timestamp}.

use serde::Serialize;

/// A request the filter refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    status_code: u16,
    error: &'static str,
    message: &'a str,
    code: &'a str,
    request_id: &'a str,
    timestamp: String,
}

impl Denial {
    pub fn error(&self) -> &'static str {
        match self.status {
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            500 => "Internal Server Error",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            _ => "Error",
        }
    }

    pub fn body(&self, request_id: &str, now_ms: i64) -> String {
        let body = ErrorBody {
            status_code: self.status,
            error: self.error(),
            message: &self.message,
            code: self.code,
            request_id,
            timestamp: iso8601(now_ms),
        };
        serde_json::to_string(&body).unwrap_or_default()
    }

    /// Headers of the reply besides content-type.
    pub fn headers(&self) -> Vec<(&'static str, &'static str)> {
        let mut headers = vec![("cache-control", "no-store")];
        // A signed request's refusal is about its signature, not a bearer token.
        if self.status == 401 && !self.code.starts_with("SIGNATURE_") {
            headers.push(("www-authenticate", r#"Bearer error="invalid_token""#));
        }
        headers
    }
}

/// `2026-11-25T20:55:23.776Z` from unix milliseconds (civil-from-days, no time zone data).
pub fn iso8601(now_ms: i64) -> String {
    let secs = now_ms.div_euclid(1000);
    let ms = now_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso8601_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_795_639_723_776), "2026-11-25T20:48:43.776Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn the_body_has_the_gateway_shape() {
        let d = Denial { status: 401, code: "TOKEN_EXPIRED", message: "Token has expired".into() };
        let body: serde_json::Value = serde_json::from_str(&d.body("rid-1", 0)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"statusCode": 401, "error": "Unauthorized", "message": "Token has expired",
                "code": "TOKEN_EXPIRED", "requestId": "rid-1", "timestamp": "1970-01-01T00:00:00.000Z"})
        );
        assert!(d.headers().contains(&("www-authenticate", r#"Bearer error="invalid_token""#)));
    }
}
