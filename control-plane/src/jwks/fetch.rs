//! One GET of a JWKS over HTTPS: the only I/O of the key fetcher.
//!
//! Trust boundary: what comes back is data from outside. It is read up to a size limit,
//! within connect and total timeouts, from an `https://` URL with no redirects (a redirect
//! could lead the fetch to a URL the registry never named), over rustls with the platform
//! roots or the registry's CA bundle; then `document` judges every key with the filter's
//! compiler. Nothing fetched becomes a key any other way.

use std::time::Duration;

use crate::registry::jwks_source::JwksSource;

use super::document::MAX_DOCUMENT_BYTES;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A fetch's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// 304 to our If-None-Match: the key set we hold is current.
    NotModified { cache_control: Option<String> },
    Document { body: Vec<u8>, etag: Option<String>, cache_control: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("the CA bundle cannot be used: {0}")]
    BadCa(String),
    #[error("cannot build the HTTPS client: {0}")]
    Client(String),
    #[error("fetch failed: {0}")]
    Request(String),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
}

/// The HTTPS client for one source: its CA bundle alone when it names one, else the
/// platform's roots.
pub fn client(source: &JwksSource) -> Result<reqwest::Client, FetchError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TOTAL_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .https_only(true)
        .user_agent(concat!("stagedoor-jwks/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &source.ca_pem {
        let roots = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| FetchError::BadCa(e.to_string()))?;
        builder = builder.tls_built_in_root_certs(false);
        for root in roots {
            builder = builder.add_root_certificate(root);
        }
    }
    builder.build().map_err(|e| FetchError::Client(e.to_string()))
}

/// GETs `uri`, sending `etag` as If-None-Match, and reads at most [`MAX_DOCUMENT_BYTES`].
pub async fn fetch(client: &reqwest::Client, uri: &str, etag: Option<&str>) -> Result<Fetched, FetchError> {
    let mut request = client.get(uri).header(reqwest::header::ACCEPT, "application/jwk-set+json, application/json");
    if let Some(etag) = etag {
        request = request.header(reqwest::header::IF_NONE_MATCH, etag);
    }
    let mut response = request.send().await.map_err(|e| FetchError::Request(error_chain(&e)))?;
    let header = |name: reqwest::header::HeaderName, response: &reqwest::Response| {
        response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    };
    let cache_control = header(reqwest::header::CACHE_CONTROL, &response);
    let status = response.status();
    if status == reqwest::StatusCode::NOT_MODIFIED && etag.is_some() {
        return Ok(Fetched::NotModified { cache_control });
    }
    if !status.is_success() {
        return Err(FetchError::Status(status.as_u16()));
    }
    if response.content_length().is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64) {
        return Err(FetchError::TooLarge);
    }
    let etag = header(reqwest::header::ETAG, &response);
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| FetchError::Request(error_chain(&e)))? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched::Document { body, etag, cache_control })
}

/// reqwest's error with its causes: "error sending request" alone does not say that the
/// certificate was refused or the connection timed out.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
