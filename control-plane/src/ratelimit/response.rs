//! A verdict as Envoy's ratelimit filter reads it: OK or OVER_LIMIT, and the headers it adds
//! to the reply (on OK too, so every limited reply carries X-RateLimit-*). A fail-closed
//! verdict is a gRPC error: the route's filter then answers 503 (its `status_on_error`).

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::ratelimit::v3::{rate_limit_response::Code, RateLimitResponse};
use stagedoor_ratelimit::headers::ReplyHeaders;
use stagedoor_ratelimit::limiter::Verdict;
use tonic::Status;

pub fn response(verdict: &Verdict) -> Result<RateLimitResponse, Status> {
    let (code, headers) = match verdict {
        Verdict::Admit { headers } => (Code::Ok, headers.as_ref()),
        Verdict::Refuse { headers } => (Code::OverLimit, Some(headers)),
        Verdict::Unavailable => return Err(Status::unavailable("the rate limit count is unreachable and this route fails closed")),
    };
    Ok(RateLimitResponse {
        overall_code: code as i32,
        response_headers_to_add: headers.map(header_values).unwrap_or_default(),
        ..Default::default()
    })
}

fn header_values(headers: &ReplyHeaders) -> Vec<HeaderValue> {
    headers.pairs().into_iter().map(|(key, value)| HeaderValue { key: key.to_owned(), value, ..Default::default() }).collect()
}


#[cfg(test)]
mod tests {
    use super::*;

    fn headers(retry: Option<u64>) -> ReplyHeaders {
        ReplyHeaders { limit: 10, remaining: 0, reset_s: 6, retry_after_s: retry }
    }

    #[test]
    fn a_refusal_is_over_limit_with_retry_after() {
        let r = response(&Verdict::Refuse { headers: headers(Some(1)) }).unwrap();
        assert_eq!(r.overall_code, Code::OverLimit as i32);
        let sent: Vec<(String, String)> = r.response_headers_to_add.iter().map(|h| (h.key.clone(), h.value.clone())).collect();
        assert_eq!(
            sent,
            [("x-ratelimit-limit", "10"), ("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "6"), ("retry-after", "1")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn an_admission_carries_the_headers_and_fail_closed_is_an_error() {
        let r = response(&Verdict::Admit { headers: Some(headers(None)) }).unwrap();
        assert_eq!((r.overall_code, r.response_headers_to_add.len()), (Code::Ok as i32, 3));
        assert!(response(&Verdict::Admit { headers: None }).unwrap().response_headers_to_add.is_empty());
        assert_eq!(response(&Verdict::Unavailable).unwrap_err().code(), tonic::Code::Unavailable);
    }
}
