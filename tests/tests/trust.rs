#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Issue 11, the control plane's half: nobody reads xDS or uses the API without the right
//! credentials, and every change is audited.

use std::process::Command;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use stagedoor_e2e::fixtures::registry_with;
use stagedoor_e2e::stack::{client, operator_client, stagedoor_bin};
use stagedoor_e2e::{Stack, StackOptions};
use stagedoor_proto::v1::control_plane_client::ControlPlaneClient;
use stagedoor_proto::v1::{ApplyRegistryRequest, ListEnvoysRequest, RegisterInstanceRequest, RevokeTokenRequest};
use tokio_stream::StreamExt;

const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Opens an ADS stream claiming `node_id` and asks for listeners: what came back within
/// 3 s, as (responses with resources, the stream's error code).
async fn ads_as(stack: &Stack, certificate: Option<&str>, node_id: &str) -> (usize, Option<tonic::Code>) {
    let mut ads = AggregatedDiscoveryServiceClient::new(stack.grpc_channel(certificate).await);
    let request = DiscoveryRequest {
        node: Some(Node { id: node_id.into(), cluster: "stagedoor-gateway".into(), ..Default::default() }),
        type_url: LISTENER_TYPE.into(),
        ..Default::default()
    };
    let (mut received, mut code) = (0, None);
    match ads.stream_aggregated_resources(tokio_stream::iter(vec![request]).chain(tokio_stream::pending())).await {
        Err(status) => code = Some(status.code()),
        Ok(response) => {
            let mut inbound = response.into_inner();
            // The first message decides: a response with resources, or the refusal.
            match tokio::time::timeout(Duration::from_secs(3), inbound.next()).await {
                Ok(Some(Ok(r))) => received += usize::from(!r.resources.is_empty()),
                Ok(Some(Err(status))) => code = Some(status.code()),
                Ok(None) | Err(_) => {}
            }
        }
    }
    (received, code)
}

#[test]
fn xds_needs_a_certificate_for_the_node_id_it_claims() {
    let stack = Stack::start(StackOptions { registry_yaml: registry_with(""), ..Default::default() });
    stack.wait_ready();
    let real = stack.envoys[0].node_id.clone();
    stack.stagedoor(&["certs", "envoy", "--dir", &stack.tls_dir.display().to_string(), "--node-id", "intruder"]);
    let rt = runtime();
    // The node's own certificate gets the listener: the client below is able to receive one.
    assert_eq!(rt.block_on(ads_as(&stack, Some(&format!("envoy-{real}")), &real)), (1, None));
    // No certificate: refused before the stream starts.
    assert_eq!(rt.block_on(ads_as(&stack, None, &real)), (0, Some(tonic::Code::Unauthenticated)));
    // Another node's certificate claiming the real node id, and the operator's: refused, nothing sent.
    assert_eq!(rt.block_on(ads_as(&stack, Some("envoy-intruder"), &real)), (0, Some(tonic::Code::PermissionDenied)));
    assert_eq!(rt.block_on(ads_as(&stack, Some("operator"), &real)), (0, Some(tonic::Code::PermissionDenied)));
    // Plain text is not served at all.
    let plain = rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", stack.xds_port)).unwrap().connect().await.unwrap();
        ControlPlaneClient::new(channel).list_envoys(ListEnvoysRequest {}).await
    });
    assert!(plain.is_err(), "{plain:?}");
    let log = stack.control_plane_log();
    assert!(log.contains("ADS stream refused") && log.contains("intruder"), "{log}");
    // The real Envoy still runs its config.
    assert_eq!(stack.get("/health").0, 200);
}

const TOKENS: &str = "tokens:
  - { name: reader, sha256: READER, scopes: [read] }
  - { name: venue-scaler, sha256: SCALER, scopes: [register], services: [venue] }
";

fn sha256(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn with_bearer(token: &'static str) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    move |mut request: tonic::Request<()>| {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        Ok(request)
    }
}

#[test]
fn the_api_authenticates_every_caller_and_authorizes_each_call() {
    let tokens_file = std::env::temp_dir().join(format!("stagedoor-trust-tokens-{}.yaml", std::process::id()));
    std::fs::write(&tokens_file, TOKENS.replace("READER", &sha256("reader-secret")).replace("SCALER", &sha256("scaler-secret"))).unwrap();
    let stack = Stack::start(StackOptions {
        registry_yaml: registry_with(""),
        redis: true,
        serve_args: vec!["--api-tokens".into(), tokens_file.display().to_string()],
        ..Default::default()
    });
    stack.wait_ready();
    let yaml = stack.registry();
    let apply = || ApplyRegistryRequest { yaml: yaml.clone(), dry_run: false, base_version: None };
    let rt = runtime();
    rt.block_on(async {
        // No credentials at all.
        let mut anonymous = ControlPlaneClient::new(stack.grpc_channel(None).await);
        assert_eq!(anonymous.list_envoys(ListEnvoysRequest {}).await.unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(anonymous.apply_registry(apply()).await.unwrap_err().code(), tonic::Code::Unauthenticated);
        // A token the file does not hold.
        let mut unknown = ControlPlaneClient::with_interceptor(stack.grpc_channel(None).await, with_bearer("guess"));
        assert_eq!(unknown.list_envoys(ListEnvoysRequest {}).await.unwrap_err().code(), tonic::Code::Unauthenticated);
        // read: may read, may not apply or revoke.
        let mut reader = ControlPlaneClient::with_interceptor(stack.grpc_channel(None).await, with_bearer("reader-secret"));
        reader.list_envoys(ListEnvoysRequest {}).await.unwrap();
        assert_eq!(reader.apply_registry(apply()).await.unwrap_err().code(), tonic::Code::PermissionDenied);
        let revoke = RevokeTokenRequest { jti: "x".into(), ..Default::default() };
        assert_eq!(reader.revoke_token(revoke).await.unwrap_err().code(), tonic::Code::PermissionDenied);
        // register, for venue only; an Envoy's certificate has no scope.
        let mut scaler = ControlPlaneClient::with_interceptor(stack.grpc_channel(None).await, with_bearer("scaler-secret"));
        let register = RegisterInstanceRequest { service: "venue".into(), address: "127.0.0.1".into(), port: 1, ttl_seconds: 5 };
        scaler.register_instance(register.clone()).await.unwrap();
        let elsewhere = RegisterInstanceRequest { service: "payment".into(), ..register.clone() };
        assert_eq!(scaler.register_instance(elsewhere).await.unwrap_err().code(), tonic::Code::PermissionDenied);
        let envoy = format!("envoy-{}", stack.envoys[0].node_id);
        let mut as_envoy = ControlPlaneClient::new(stack.grpc_channel(Some(&envoy)).await);
        assert_eq!(as_envoy.register_instance(register).await.unwrap_err().code(), tonic::Code::PermissionDenied);
        // The operator certificate may do everything.
        stack.api_client().await.apply_registry(apply()).await.unwrap();
    });
    let audit: Vec<serde_json::Value> = stack
        .control_plane_log()
        .lines()
        .filter_map(|l| l.split_once("stagedoor::audit: ").map(|(_, json)| serde_json::from_str(json).unwrap()))
        .collect();
    let actions: Vec<String> = audit.iter().map(|a| format!("{} {} {}", a["who"].as_str().unwrap(), a["action"].as_str().unwrap(), a["outcome"]["result"].as_str().unwrap())).collect();
    assert_eq!(
        actions,
        [
            "anonymous apply refused",
            "token:reader apply refused",
            "token:reader revoke refused",
            "token:venue-scaler register ok",
            "token:venue-scaler register refused",
            &format!("envoy:{} register refused", stack.envoys[0].node_id),
            "operator:operator apply ok",
        ],
        "{audit:?}"
    );
    let applied = audit.last().unwrap();
    assert!(applied["what"]["registry_before"].is_string() && applied["what"]["registry_after"].is_string(), "{applied}");
    assert!(applied["at_unix_ms"].as_u64().unwrap() > 0);
    let _ = std::fs::remove_file(tokens_file);
}

#[test]
fn the_revocation_feed_is_for_envoys_and_status_for_operators() {
    let stack = Stack::start(StackOptions { registry_yaml: registry_with(""), ..Default::default() });
    stack.wait_ready();
    let feed = format!("https://127.0.0.1:{}/v1/revocations", stack.http_port);
    let status = format!("https://127.0.0.1:{}/status", stack.http_port);
    // The operator reads /status but not the feed.
    let operator = operator_client(&stack.tls_dir);
    assert_eq!(operator.get(&status).send().unwrap().status(), 200);
    assert_eq!(operator.get(&feed).send().unwrap().status(), 403);
    // Without a client certificate: neither.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(stack.tls_dir.join("ca.pem")).unwrap()).unwrap();
    let anonymous = reqwest::blocking::Client::builder().no_proxy().use_rustls_tls().tls_built_in_root_certs(false).add_root_certificate(ca).build().unwrap();
    assert_eq!(anonymous.get(&feed).send().unwrap().status(), 401);
    assert_eq!(anonymous.get(&status).send().unwrap().status(), 401);
    // Plain HTTP gets nothing from the TLS port; metrics stay plain on their own port.
    assert!(client().get(format!("http://127.0.0.1:{}/status", stack.http_port)).send().is_err());
    let metrics = client().get(format!("http://127.0.0.1:{}/metrics", stack.metrics_port)).send().unwrap();
    assert!(metrics.text().unwrap().contains("stagedoor_connected_envoys 1"));
    // The Envoy itself polls the feed over mutual TLS: the status shows a recent poll.
    let polled = stagedoor_e2e::stack::time_until(Duration::from_secs(5), || stack.control_plane_status()["revocation"]["last_poll_unix_ms"].is_u64());
    assert!(polled.is_some(), "{}", stack.control_plane_status());
}

#[test]
fn bad_credentials_stop_the_control_plane_at_startup_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("stagedoor-trust-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |args: &[&str]| Command::new(stagedoor_bin()).args(args).current_dir(stagedoor_e2e::stack::workspace_root()).output().unwrap();
    let serve = |dir: &std::path::Path| {
        let started = Instant::now();
        let out = run(&["serve", "--tls-dir", &dir.display().to_string(), "--xds", "127.0.0.1:0", "--http", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]);
        assert!(!out.status.success());
        eprintln!("refused in {:?}", started.elapsed());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // Nothing there: a hint, not a plain-text fallback.
    assert!(serve(&dir).contains("stagedoor certs init"));
    assert!(run(&["certs", "init", "--dir", &dir.display().to_string()]).status.success());
    // Idempotent: a second init keeps the files.
    let again = String::from_utf8_lossy(&run(&["certs", "init", "--dir", &dir.display().to_string()]).stdout).into_owned();
    assert_eq!(again.matches("kept").count(), 5, "{again}");
    // A key that is not the certificate's.
    std::fs::copy(dir.join("operator-key.pem"), dir.join("control-plane-key.pem")).unwrap();
    let e = serve(&dir);
    assert!(e.contains("control-plane-key.pem: this key does not belong to the certificate"), "{e}");
    // A certificate that does not parse.
    std::fs::write(dir.join("control-plane.pem"), "garbage").unwrap();
    let e = serve(&dir);
    assert!(e.contains("control-plane.pem") && e.contains("not a PEM certificate"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn insecure_is_explicit_plain_and_warned_about() {
    use stagedoor_e2e::ports::free_port;
    let (xds, http, metrics) = (free_port(), free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("stagedoor-trust-insecure-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let registry = dir.join("registry.yaml");
    std::fs::write(&registry, registry_with("")).unwrap();
    let log = dir.join("control-plane.log");
    let mut child = Command::new(stagedoor_bin())
        .args(["serve", "--insecure", "--registry", &registry.display().to_string()])
        .args(["--xds", &format!("127.0.0.1:{xds}"), "--http", &format!("127.0.0.1:{http}"), "--metrics", &format!("127.0.0.1:{metrics}")])
        .env("NO_COLOR", "1")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let up = stagedoor_e2e::stack::wait_for(Duration::from_secs(20), || client().get(format!("http://127.0.0.1:{http}/status")).send().is_ok());
    let listed = runtime().block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{xds}")).unwrap().connect().await.unwrap();
        ControlPlaneClient::new(channel).list_envoys(ListEnvoysRequest {}).await
    });
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(up, "{text}");
    assert!(listed.is_ok(), "{listed:?}");
    assert!(text.contains("WARN") && text.contains("--insecure: xDS, the API and /status are plain text"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
