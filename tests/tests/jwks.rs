#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Keys from an identity provider's JWKS URL, through a real Envoy: the control plane
//! fetches them over HTTPS (the test CA) and pushes them; a rotated kid is accepted within a
//! second of the refetch its first token causes; a flood of random kids costs a bounded
//! number of fetches; a provider that goes away leaves the last keys working.
//!
//! The identity provider is a small HTTPS server in this file (rustls, one thread per
//! connection): it is the outside world, not a part of the gateway.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use stagedoor_e2e::fixtures::{auth_yaml, claims, VENUE_SERVICE};
use stagedoor_e2e::ports::free_port;
use stagedoor_e2e::raw;
use stagedoor_e2e::stack::{time_until, wait_for};
use stagedoor_e2e::{Stack, StackOptions};
use stagedoor_test_support::{ec_signing_key, TestCerts};

const ISSUER: &str = "https://idp.test/";

/// What the provider serves: the JWKs it publishes, or an error status.
struct Published {
    jwks: Vec<String>,
    status: u16,
    version: u64,
}

/// The identity provider: `/jwks` over HTTPS with an ETag per published version, every
/// GET of it counted.
struct Idp {
    port: u16,
    published: Arc<Mutex<Published>>,
    fetches: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    certs: TestCerts,
}

impl Idp {
    fn start(name: &str, jwks: Vec<String>, status: u16) -> Idp {
        let certs = TestCerts::new(name);
        let leaf = certs.write_leaf("idp", &["127.0.0.1", "localhost"], -1, 30);
        let cert_pem = std::fs::read(&leaf.cert_file).unwrap();
        let key_pem = std::fs::read(&leaf.key_file).unwrap();
        use rustls::pki_types::pem::PemObject;
        let chain = rustls::pki_types::CertificateDer::pem_slice_iter(&cert_pem).collect::<Result<Vec<_>, _>>().unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key_pem).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let config = Arc::new(config);
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let published = Arc::new(Mutex::new(Published { jwks, status, version: 1 }));
        let (fetches, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let acceptor = {
            let (published, fetches, stop) = (published.clone(), fetches.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (config, published, fetches) = (config.clone(), published.clone(), fetches.clone());
                    std::thread::spawn(move || serve_one(stream, config, &published, &fetches));
                }
                // The listener is dropped here: connections are refused from now on.
            })
        };
        Idp { port, published, fetches, stop, acceptor: Some(acceptor), certs }
    }

    fn uri(&self) -> String {
        format!("https://127.0.0.1:{}/jwks", self.port)
    }

    fn publish(&self, jwks: Vec<String>, status: u16) {
        let mut published = self.published.lock().unwrap();
        published.jwks = jwks;
        published.status = status;
        published.version += 1;
    }

    fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Stops accepting and closes the port.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.join().unwrap();
        }
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.certs.dir);
    }
}

/// One request per connection (`connection: close`), bounded in time and size.
fn serve_one(tcp: TcpStream, config: Arc<rustls::ServerConfig>, published: &Mutex<Published>, fetches: &AtomicU64) {
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let Ok(connection) = rustls::ServerConnection::new(config) else { return };
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let is_jwks = head.starts_with("GET /jwks ");
    let if_none_match = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("if-none-match")).map(|(_, v)| v.trim().to_owned()));
    if is_jwks {
        fetches.fetch_add(1, Ordering::SeqCst);
    }
    let (status, etag, body) = {
        let published = published.lock().unwrap();
        let etag = format!("\"v{}\"", published.version);
        match (is_jwks, published.status) {
            (false, _) => (404, etag, String::from("not found")),
            (true, 200) if if_none_match.as_deref() == Some(etag.as_str()) => (304, etag, String::new()),
            (true, 200) => (200, etag, format!("{{\"keys\":[{}]}}", published.jwks.join(","))),
            (true, status) => (status, etag, String::from("unavailable")),
        }
    };
    let reply = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\netag: {etag}\r\ncache-control: public, max-age=300\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tls.write_all(reply.as_bytes());
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// The e2e auth section with the provider's JWKS as a second key.
fn registry(idp: &Idp) -> String {
    let jwks_key = format!(
        "      dev: true\n    - jwks_uri: {}\n      issuer: {ISSUER}\n      algorithms: [ES256]\n      ca_file: {}\n",
        idp.uri(),
        idp.certs.ca_file
    );
    format!("{}services:\n{VENUE_SERVICE}", auth_yaml().replace("      dev: true\n", &jwks_key))
}

/// An ES256 token of the provider's, signed with `pem` under `kid`.
fn idp_token(pem: &str, kid: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    encode(&header, &claims(json!({"iss": ISSUER, "sub": "idp-user"})), &EncodingKey::from_ec_pem(pem.as_bytes()).unwrap()).unwrap()
}

/// A token that names `kid` of the provider's and is signed by nobody: the filter refuses
/// a kid it has no key for before it looks at the signature, so a flood needs no signing.
fn random_kid_token(kid: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": kid}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims(json!({"iss": ISSUER})).to_string());
    format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]))
}

/// Sends 1,000 tokens with random kids; each must be refused TOKEN_UNKNOWN_KEY. Returns the
/// fetches the provider saw meanwhile (and in the 2 s after, for the last reports).
fn flood(client: &reqwest::blocking::Client, stack: &Stack, idp: &Idp) -> (u64, Duration) {
    let before = idp.fetches();
    let started = Instant::now();
    for i in 0..1000 {
        let kid = format!("random-{i}-{}", started.elapsed().as_nanos());
        let (code, body) = call(client, stack, &random_kid_token(&kid));
        assert_eq!((code, body["code"].as_str()), (401, Some("TOKEN_UNKNOWN_KEY")), "token {i}: {body}");
    }
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let fetches = idp.fetches() - before;
    eprintln!("1000 random kids in {} ms cost {fetches} fetches", took.as_millis());
    (fetches, started.elapsed())
}

/// (status, body) of a venue request with `token` over a kept-alive client.
fn call(client: &reqwest::blocking::Client, stack: &Stack, token: &str) -> (u16, Value) {
    let response = client.get(stack.url("/api/v1/venues/1")).bearer_auth(token).send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn issuer_status(stack: &Stack) -> Value {
    stack.control_plane_status()["jwks"].as_array().and_then(|issuers| issuers.first().cloned()).unwrap_or(Value::Null)
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

#[test]
fn a_rotated_kid_is_accepted_by_every_envoy_within_a_second_of_its_refetch_and_random_kids_cost_a_bounded_number_of_fetches() {
    let (first_pem, first_jwk) = ec_signing_key("first");
    let (second_pem, second_jwk) = ec_signing_key("second");
    let idp = Idp::start("jwks-rotation", vec![first_jwk.clone()], 200);
    let stack = Stack::start(StackOptions { registry_yaml: registry(&idp), envoys: 2, ..Default::default() });
    stack.wait_ready();
    // Both Envoys listen on the gateway port (SO_REUSEPORT); wait until both have the config.
    for (i, envoy) in stack.envoys.iter().enumerate() {
        let ready = time_until(Duration::from_secs(20), || stack.config_dump(i).contains("stagedoor_routes"));
        assert!(ready.is_some(), "envoy {} never got its routes", envoy.node_id);
    }
    let client = client();

    let first = idp_token(&first_pem, "first");
    assert!(time_until(Duration::from_secs(10), || call(&client, &stack, &first).0 == 200).is_some(), "the first key never worked");
    let status = issuer_status(&stack);
    assert_eq!(status["kids"], json!(["first"]), "{status}");

    // The provider rotates: it publishes a second key beside the first.
    idp.publish(vec![first_jwk, second_jwk], 200);
    let second = idp_token(&second_pem, "second");
    let fetches_before = idp.fetches();
    let (code, body) = call(&client, &stack, &second);
    assert_eq!((code, body["code"].as_str()), (401, Some("TOKEN_UNKNOWN_KEY")), "{body}");
    // The kernel spreads fresh connections over both Envoys, so "20 fresh connections in a
    // row accepted" covers both.
    let header = format!("Authorization: Bearer {second}");
    let everywhere = || (0..20).all(|_| raw::request(stack.gateway_port, "GET", "/api/v1/venues/1", &[&header], "").status == 200);
    let accepted = time_until(Duration::from_secs(5), everywhere);
    let accepted_at_ms = unix_ms();
    assert!(accepted.is_some(), "the rotated key was never accepted; control plane:\n{}", stack.control_plane_log());
    assert_eq!(idp.fetches(), fetches_before + 1, "one refetch, whichever Envoys reported the kid");
    let status = issuer_status(&stack);
    assert_eq!(status["kids"], json!(["first", "second"]), "{status}");
    let refetched_at_ms = status["last_fetch_unix_ms"].as_u64().unwrap();
    let after_refetch = accepted_at_ms.saturating_sub(refetched_at_ms);
    eprintln!("refetch -> the rotated token accepted by both Envoys after at most {after_refetch} ms");
    assert!(after_refetch <= 1000, "accepted {after_refetch} ms after the refetch");
    assert_eq!(call(&client, &stack, &first).0, 200, "the first key still works");

    // 1,000 tokens with random kids: every one refused, and the provider barely asked.
    // The refetch above started the 30 s interval: the flood's kids wait for its end, when
    // one fetch looks for all of them (and the flood may outlast one interval).
    let (fetches, took) = flood(&client, &stack, &idp);
    let intervals = 1 + took.as_secs() / 30;
    assert!(fetches <= intervals, "{fetches} fetches for the flood (at most {intervals})");
    assert_eq!(call(&client, &stack, &second).0, 200);
}

#[test]
fn a_flood_of_random_kids_costs_one_fetch_and_the_kids_it_did_not_find_are_remembered() {
    let (pem, jwk) = ec_signing_key("real");
    let idp = Idp::start("jwks-flood", vec![jwk], 200);
    let stack = Stack::start(StackOptions { registry_yaml: registry(&idp), ..Default::default() });
    stack.wait_ready();
    let client = client();
    let token = idp_token(&pem, "real");
    assert!(time_until(Duration::from_secs(10), || call(&client, &stack, &token).0 == 200).is_some());
    // The first report is looked for at once; every later one waits for the interval's end.
    let (fetches, took) = flood(&client, &stack, &idp);
    let intervals = 1 + took.as_secs() / 30;
    assert!((1..=intervals).contains(&fetches), "{fetches} fetches (1 to {intervals})");
    let status = issuer_status(&stack);
    assert!(status["kids_known_absent"].as_u64().unwrap() >= 1, "{status}");
    // The filter sent at most a batch (32) a tick and counted the rest as dropped.
    let reported = stack.envoy_stat(0, "wasmcustom.stagedoor_unknown_kids_reported").unwrap_or(0);
    let dropped = stack.envoy_stat(0, "wasmcustom.stagedoor_unknown_kids_dropped").unwrap_or(0);
    eprintln!("the filter reported {reported} kids and dropped {dropped}");
    assert!(reported >= 1 && dropped >= 1 && reported + dropped <= 1000, "reported {reported}, dropped {dropped}");
    assert_eq!(status["kids"], json!(["real"]), "{status}");
    assert_eq!(call(&client, &stack, &token).0, 200);
}

#[test]
fn before_the_first_good_fetch_the_issuers_tokens_are_refused_with_a_reason() {
    let (pem, jwk) = ec_signing_key("only");
    let idp = Idp::start("jwks-fail-closed", vec![jwk.clone()], 503);
    let stack = Stack::start(StackOptions { registry_yaml: registry(&idp), ..Default::default() });
    stack.wait_ready();
    let client = client();
    let token = idp_token(&pem, "only");
    let (code, body) = call(&client, &stack, &token);
    assert_eq!((code, body["code"].as_str()), (401, Some("TOKEN_KEYS_UNAVAILABLE")), "{body}");
    let status = issuer_status(&stack);
    assert_eq!(status["keys_loaded"], json!(false), "{status}");
    assert!(status["last_error"].as_str().unwrap_or("").contains("503"), "{status}");
    assert!(status["last_error_age_ms"].is_u64(), "{status}");
    // The gateway's own tokens are not held up by the provider.
    assert_eq!(call(&client, &stack, &stagedoor_e2e::fixtures::token(json!({}))).0, 200);

    // The provider recovers: the retries (1 s, 2 s, 4 s ...) find the key.
    idp.publish(vec![jwk], 200);
    let accepted = time_until(Duration::from_secs(40), || call(&client, &stack, &token).0 == 200);
    assert!(accepted.is_some(), "never accepted after the provider recovered: {}", issuer_status(&stack));
    assert_eq!(issuer_status(&stack)["keys_loaded"], json!(true));
}

#[test]
fn a_provider_that_goes_away_leaves_the_last_keys_working_and_status_shows_the_error() {
    let (pem, jwk) = ec_signing_key("kept");
    let mut idp = Idp::start("jwks-gone", vec![jwk], 200);
    let stack = Stack::start(StackOptions { registry_yaml: registry(&idp), ..Default::default() });
    stack.wait_ready();
    let client = client();
    let token = idp_token(&pem, "kept");
    assert!(time_until(Duration::from_secs(10), || call(&client, &stack, &token).0 == 200).is_some());

    idp.stop();
    // An unknown kid makes the control plane fetch again, and the fetch fails.
    let (code, _) = call(&client, &stack, &idp_token(&pem, "never-published"));
    assert_eq!(code, 401);
    let failed = wait_for(Duration::from_secs(10), || issuer_status(&stack)["last_error"].is_string());
    let status = issuer_status(&stack);
    assert!(failed, "no error shown: {status}");
    eprintln!("status after the provider went away: {status}");
    assert!(status["last_error"].as_str().unwrap().contains("fetch failed"), "{status}");
    assert!(status["last_error_age_ms"].is_u64() && status["last_fetch_age_ms"].is_u64(), "{status}");
    std::thread::sleep(Duration::from_millis(300));
    let later = issuer_status(&stack);
    assert!(later["last_error_age_ms"].as_u64() > status["last_error_age_ms"].as_u64(), "the age grows: {later}");
    assert_eq!(status["kids"], json!(["kept"]), "the last good keys are still the ones served");
    assert_eq!(call(&client, &stack, &token).0, 200, "the last keys keep working");
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
