//! `stagedoor-echo`: an upstream that answers every request with what it received, exactly.
//!
//! A hand-rolled HTTP/1.1 server on purpose: general-purpose servers normalize the request
//! target, merge repeated headers and reorder them, which is what the gateway's tests must
//! be able to see. It keeps the raw target, every header in order and case, and the body.
//!
//! Control headers: `x-echo-status: NNN` answers that status, `x-echo-delay-ms: N` waits
//! first, `x-echo-set-internal: 1` adds response headers the gateway must strip (every name
//! of the filter core's response list, and `www-authenticate`, which it keeps), and
//! `x-echo-key: K` counts the request under K; `GET /__echo/count/K` (sent to the echo
//! itself) answers `{"key": K, "count": N}`, which is how tests see retries.
//! `x-echo-set-cookie: V` and `x-echo-cache-control: V` add those response headers. All
//! but `x-echo-set-internal` are also read from the query (`?x-echo-status=500&x-echo-delay-ms=300`), for
//! callers that send only the gateway's own headers (composite routes' source calls).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// Header lines of at least 128 KiB must fit; the whole head may be up to 1 MiB.
const MAX_HEAD: usize = 1024 * 1024;
const MAX_BODY: usize = 16 * 1024 * 1024;
const MAX_HEADERS: usize = 1024;

#[derive(Debug, Serialize)]
pub struct Echo {
    pub service: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: BTreeMap<String, Vec<String>>,
    pub raw_headers: Vec<(String, String)>,
    pub body: String,
}

type Counts = std::sync::Arc<std::sync::Mutex<BTreeMap<String, u64>>>;

pub async fn serve(listen: SocketAddr, service: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    tracing::info!(%listen, %service, "echo upstream listening");
    let counts = Counts::default();
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        let service = service.clone();
        let counts = counts.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(socket, &service, &counts).await {
                tracing::debug!(error = %e, "echo connection ended");
            }
        });
    }
}

/// As [`serve`], over TLS: the certificate in `tls` (and, if it says so, a client
/// certificate required), for tests of upstream TLS.
pub async fn serve_tls(listen: SocketAddr, service: String, tls: std::sync::Arc<rustls::ServerConfig>) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    tracing::info!(%listen, %service, "echo upstream listening over TLS");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let counts = Counts::default();
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        let (service, counts, acceptor) = (service.clone(), counts.clone(), acceptor.clone());
        tokio::spawn(async move {
            let stream = match acceptor.accept(socket).await {
                Ok(stream) => stream,
                Err(e) => return tracing::info!(error = %e, "echo TLS handshake refused"),
            };
            if let Err(e) = connection(stream, &service, &counts).await {
                tracing::debug!(error = %e, "echo connection ended");
            }
        });
    }
}

/// The echo's TLS: its certificate, and a client certificate signed by `client_ca` required
/// when one is given.
pub fn tls_config(cert: &std::path::Path, key: &std::path::Path, client_ca: Option<&std::path::Path>) -> anyhow::Result<std::sync::Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let builder = rustls::ServerConfig::builder_with_provider(stagedoor_control_plane::tls::load::provider()).with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for der in CertificateDer::pem_file_iter(ca)? {
                roots.add(der?)?;
            }
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(std::sync::Arc::new(roots), stagedoor_control_plane::tls::load::provider()).build()?,
            )
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(std::sync::Arc::new(config))
}

struct Head {
    method: String,
    target: String,
    raw_headers: Vec<(String, String)>,
    head_len: usize,
}

enum Parsed {
    Incomplete,
    Done(Head),
    Bad(&'static str),
}

fn parse_head(buf: &[u8]) -> Parsed {
    let mut headers = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Partial) => Parsed::Incomplete,
        Ok(httparse::Status::Complete(head_len)) => Parsed::Done(Head {
            method: request.method.unwrap_or_default().to_owned(),
            target: request.path.unwrap_or_default().to_owned(),
            raw_headers: request
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
                .collect(),
            head_len,
        }),
        Err(httparse::Error::TooManyHeaders) => Parsed::Bad("too many headers"),
        Err(_) => Parsed::Bad("malformed request"),
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin>(mut socket: S, service: &str, counts: &Counts) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    loop {
        let head = loop {
            match parse_head(&buf) {
                Parsed::Done(head) => break head,
                Parsed::Bad(reason) => return reply_plain(&mut socket, 400, reason).await,
                Parsed::Incomplete if buf.len() > MAX_HEAD => {
                    return reply_plain(&mut socket, 431, "request head too large").await
                }
                Parsed::Incomplete => {
                    if read_more(&mut socket, &mut buf).await? == 0 {
                        return Ok(());
                    }
                }
            }
        };
        buf.drain(..head.head_len);
        let header = |name: &str| {
            head.raw_headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
        };
        let chunked = header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let body = if chunked {
            read_chunked(&mut socket, &mut buf).await?
        } else {
            let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            if length > MAX_BODY {
                return reply_plain(&mut socket, 413, "body too large").await;
            }
            while buf.len() < length {
                if read_more(&mut socket, &mut buf).await? == 0 {
                    return Ok(());
                }
            }
            buf.drain(..length).collect()
        };
        if let Some(key) = head.target.strip_prefix("/__echo/count/") {
            let count = counts.lock().map(|c| c.get(key).copied().unwrap_or(0)).unwrap_or(0);
            let json = serde_json::json!({"key": key, "count": count}).to_string();
            let response = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}", json.len());
            socket.write_all(response.as_bytes()).await?;
            continue;
        }
        // The query's copies serve callers that cannot set headers (composite routes send
        // only the gateway's own).
        let control = |name: &str| header(name).or_else(|| query_value(&head.target, name));
        if let Some(key) = control("x-echo-key") {
            if let Ok(mut c) = counts.lock() {
                *c.entry(key.to_owned()).or_default() += 1;
            }
        }
        let status: u16 = control("x-echo-status").and_then(|v| v.parse().ok()).filter(|s| (200..600).contains(s)).unwrap_or(200);
        if let Some(ms) = control("x-echo-delay-ms").and_then(|v| v.parse::<u64>().ok()) {
            tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
        }
        let set_internal = header("x-echo-set-internal") == Some("1");
        let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let set_cookie = control("x-echo-set-cookie").map(str::to_owned);
        let cache_control = control("x-echo-cache-control").map(str::to_owned);
        let echo = describe(service, head, &body);
        let json = serde_json::to_vec(&echo).unwrap_or_default();
        let mut response = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-echo-service: {service}\r\n",
            reason(status),
            json.len()
        );
        if set_internal {
            response.push_str("X-Internal-Secret: s3cr3t\r\nx-internal-debug: 1\r\nX-Echo-Marker: 1\r\n");
            // And every name the gateway strips from responses, plus one it must keep.
            for name in stagedoor_filter_core::headers::response_removed_headers().chain(["www-authenticate"]) {
                response.push_str(&format!("{name}: from-upstream\r\n"));
            }
        }
        // Response headers a cache must not keep an answer with.
        if let Some(value) = set_cookie {
            response.push_str(&format!("set-cookie: {value}\r\n"));
        }
        if let Some(value) = cache_control {
            response.push_str(&format!("cache-control: {value}\r\n"));
        }
        if close {
            response.push_str("connection: close\r\n");
        }
        response.push_str("\r\n");
        // One write: a head and a body in two small writes meet Nagle and delayed ACKs.
        let mut bytes = response.into_bytes();
        bytes.extend_from_slice(&json);
        socket.write_all(&bytes).await?;
        if close {
            return socket.shutdown().await;
        }
    }
}

/// The value of `name` in the request target's query, if given.
fn query_value<'t>(target: &'t str, name: &str) -> Option<&'t str> {
    let (_, query) = target.split_once('?')?;
    query.split('&').find_map(|pair| pair.split_once('=').filter(|(n, _)| *n == name).map(|(_, v)| v))
}

fn describe(service: &str, head: Head, body: &[u8]) -> Echo {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &head.raw_headers {
        headers.entry(name.to_ascii_lowercase()).or_default().push(value.clone());
    }
    let query = head.target.split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default();
    Echo {
        service: service.to_owned(),
        method: head.method,
        path: head.target,
        query,
        headers,
        raw_headers: head.raw_headers,
        body: String::from_utf8_lossy(body).into_owned(),
    }
}

async fn read_more<S: AsyncRead + AsyncWrite + Unpin>(socket: &mut S, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 16 * 1024];
    let n = socket.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

async fn read_line<S: AsyncRead + AsyncWrite + Unpin>(socket: &mut S, buf: &mut Vec<u8>) -> std::io::Result<Option<String>> {
    loop {
        if let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..pos]).into_owned();
            buf.drain(..pos + 2);
            return Ok(Some(line));
        }
        if buf.len() > MAX_HEAD || read_more(socket, buf).await? == 0 {
            return Ok(None);
        }
    }
}

async fn read_chunked<S: AsyncRead + AsyncWrite + Unpin>(socket: &mut S, buf: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let Some(size_line) = read_line(socket, buf).await? else { return Ok(body) };
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 {
            // Trailers, then the empty line.
            while let Some(line) = read_line(socket, buf).await? {
                if line.is_empty() {
                    break;
                }
            }
            return Ok(body);
        }
        while buf.len() < size + 2 {
            if body.len() + size > MAX_BODY || read_more(socket, buf).await? == 0 {
                return Ok(body);
            }
        }
        body.extend(buf.drain(..size));
        buf.drain(..2);
    }
}

async fn reply_plain<S: AsyncRead + AsyncWrite + Unpin>(socket: &mut S, status: u16, message: &str) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{message}",
        reason(status),
        message.len()
    );
    socket.write_all(response.as_bytes()).await?;
    socket.shutdown().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
