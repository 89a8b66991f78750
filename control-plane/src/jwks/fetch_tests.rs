//! The fetch against a real HTTPS server on loopback (the test CA): what crosses the trust
//! boundary is bounded and comes only from the URL the registry names.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::test_support::TestCerts;

/// Serves every connection with the reply `answer` gives for the request head; returns
/// the port.
async fn server(certs: &TestCerts, answer: fn(&str) -> String) -> u16 {
    let leaf = certs.write_leaf("jwks-server", &["127.0.0.1"], -1, 30);
    let chain = CertificateDer::pem_file_iter(&leaf.cert_file).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(&leaf.key_file).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(crate::tls::load::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = answer(&String::from_utf8_lossy(&head));
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

fn source(certs: &TestCerts) -> JwksSource {
    JwksSource {
        issuer: "https://idp.test/".into(),
        uri: String::new(),
        algorithms: vec!["ES256".into()],
        refresh: Duration::from_secs(300),
        ca_pem: Some(certs.ca_pem.clone()),
    }
}

fn reply(status: &str, headers: &str, body: &str) -> String {
    format!("HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
}

fn etagged(head: &str) -> String {
    if head.to_ascii_lowercase().contains("if-none-match: \"v1\"") {
        reply("304 Not Modified", "etag: \"v1\"\r\n", "")
    } else {
        reply("200 OK", "etag: \"v1\"\r\ncache-control: max-age=60\r\n", "{\"keys\":[]}")
    }
}

#[tokio::test]
async fn the_etag_is_sent_back_and_a_304_says_not_modified() {
    let certs = TestCerts::new("jwks-fetch-etag");
    let port = server(&certs, etagged).await;
    let client = client(&source(&certs)).unwrap();
    let uri = format!("https://127.0.0.1:{port}/jwks");
    let first = fetch(&client, &uri, None).await.unwrap();
    assert_eq!(
        first,
        Fetched::Document { body: b"{\"keys\":[]}".to_vec(), etag: Some("\"v1\"".into()), cache_control: Some("max-age=60".into()) }
    );
    assert_eq!(fetch(&client, &uri, Some("\"v1\"")).await.unwrap(), Fetched::NotModified { cache_control: None });
}

#[tokio::test]
async fn a_document_over_the_limit_is_refused_declared_or_streamed() {
    let certs = TestCerts::new("jwks-fetch-large");
    let declared = server(&certs, |_| reply("200 OK", "", &"x".repeat(MAX_DOCUMENT_BYTES + 1))).await;
    let streamed = server(&certs, |_| {
        let chunk = "x".repeat(64 * 1024);
        let chunks: String = (0..5).map(|_| format!("{:x}\r\n{chunk}\r\n", chunk.len())).collect();
        format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{chunks}0\r\n\r\n")
    })
    .await;
    let client = client(&source(&certs)).unwrap();
    for port in [declared, streamed] {
        let result = fetch(&client, &format!("https://127.0.0.1:{port}/jwks"), None).await;
        assert_eq!(result, Err(FetchError::TooLarge), "port {port}");
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_an_error_status_is_an_error() {
    let certs = TestCerts::new("jwks-fetch-redirect");
    let port = server(&certs, |_| reply("302 Found", "location: https://elsewhere.test/jwks\r\n", "")).await;
    let client = client(&source(&certs)).unwrap();
    assert_eq!(fetch(&client, &format!("https://127.0.0.1:{port}/jwks"), None).await, Err(FetchError::Status(302)));
    let port = server(&certs, |_| reply("503 Service Unavailable", "", "")).await;
    assert_eq!(fetch(&client, &format!("https://127.0.0.1:{port}/jwks"), None).await, Err(FetchError::Status(503)));
}

#[tokio::test]
async fn a_server_the_ca_did_not_sign_is_refused() {
    let certs = TestCerts::new("jwks-fetch-ca");
    let port = server(&certs, etagged).await;
    let other = TestCerts::new("jwks-fetch-other-ca");
    let client = client(&source(&other)).unwrap();
    let error = fetch(&client, &format!("https://127.0.0.1:{port}/jwks"), None).await.unwrap_err();
    assert!(matches!(&error, FetchError::Request(m) if m.to_ascii_lowercase().contains("certificate")), "{error}");
    let plain = client.get(format!("http://127.0.0.1:{port}/jwks")).send().await;
    assert!(plain.is_err(), "https only");
}
