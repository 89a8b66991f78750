//! `signed_requests` and signed services, from the registry file to the pushed config.

use prost::Message;

use crate::registry::Registry;
use crate::test_support::{registry_yaml, translate_options};
use crate::translate::{check, translate};

const PAYMENTS: &str = "services:
  - name: payment
    routes: [{ prefix: /api/v1/payments }]
    instances: [{ address: 127.0.0.1, port: 9 }]
    require_signatures: true
";

fn with_signed(section: &str, services: &str) -> String {
    format!("{section}{}", registry_yaml(services))
}

fn parse(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Registry, String> {
    Registry::parse_with_env("reg.yaml", yaml, env).map_err(|e| e.to_string())
}

const KEYS: &str = "signed_requests:\n  keys:\n    - { id: acme, secret_env: ACME_KEY }\n    - { id: old, secret: literal-secret-0123456789, legacy_body_only: true }\n";

fn env(name: &str) -> Option<String> {
    (name == "ACME_KEY").then(|| String::from("acme-secret-from-env-0123456789"))
}

#[test]
fn secrets_come_from_the_environment_and_are_redacted_when_written_back() {
    let registry = parse(&with_signed(KEYS, PAYMENTS), &env).unwrap();
    let config = check(&registry, None).unwrap();
    let signed = config.signed_requests.unwrap();
    assert_eq!(signed.tolerance_secs, 300);
    assert_eq!(signed.keys[0].secret, "acme-secret-from-env-0123456789");
    assert!(signed.keys[1].legacy_body_only);
    assert_eq!(signed.replay.cluster, "stagedoor_ratelimit");
    assert_eq!(signed.replay.timeout_ms, 250);
    let written = registry.to_file(true).signed_requests.unwrap();
    assert_eq!(written.keys[0].secret_env.as_deref(), Some("ACME_KEY"));
    assert_eq!(written.keys[1].secret.as_deref(), Some(crate::registry::REDACTED));
    let other = parse(&with_signed(KEYS, PAYMENTS), &|_| Some(String::from("another-secret-0123456789"))).unwrap();
    assert_ne!(registry.version, other.version, "a rotated secret is a new version");
}

#[test]
fn bad_sections_are_refused_naming_the_field() {
    let e = parse(&with_signed(KEYS, PAYMENTS), &|_| None).unwrap_err();
    assert_eq!(e, "reg.yaml: signed_requests: keys[0] (\"acme\").secret_env: ACME_KEY is not set in the control plane's environment");
    let both = "signed_requests:\n  keys:\n    - { id: acme, secret: a, secret_env: B }\n";
    let e = parse(&with_signed(both, PAYMENTS), &env).unwrap_err();
    assert!(e.contains("keys[0] (\"acme\").secret: give exactly one"), "{e}");
    // The filter's compiler judges the rest, with the field named, before anything is pushed.
    let short = "signed_requests:\n  keys:\n    - { id: acme, secret: short }\n";
    let registry = parse(&with_signed(short, PAYMENTS), &env).unwrap();
    assert_eq!(check(&registry, None).unwrap_err().to_string(), "signed_requests: keys[0] (\"acme\").secret: must be at least 16 bytes");
    let registry = parse(&registry_yaml(PAYMENTS), &env).unwrap();
    let e = check(&registry, None).unwrap_err().to_string();
    assert!(e.contains("service \"payment\"") && e.contains("require_signatures: needs the callers' keys"), "{e}");
    let bad_route = PAYMENTS.replace("require_signatures: true", "signed_routes: [{ method: post, path: /api/v1/payments }]");
    let registry = parse(&with_signed(KEYS, &bad_route), &env).unwrap();
    let e = check(&registry, None).unwrap_err().to_string();
    assert!(e.contains("service \"payment\"") && e.contains("signed_routes[0]"), "{e}");
}

#[test]
fn signed_requests_bring_the_rate_limit_services_cluster_without_global_limits() {
    let registry = parse(&with_signed(KEYS, PAYMENTS), &env).unwrap();
    let resources = translate(&registry, &Default::default(), &[], &translate_options(8080)).unwrap();
    assert!(resources.clusters.iter().any(|c| c.name == "stagedoor_ratelimit"));
    let plain = parse(&registry_yaml(&PAYMENTS.replace("    require_signatures: true\n", "")), &env).unwrap();
    let resources = translate(&plain, &Default::default(), &[], &translate_options(8080)).unwrap();
    assert!(!resources.clusters.iter().any(|c| c.name == "stagedoor_ratelimit"));
}

#[test]
fn the_filters_replay_request_is_a_rate_limit_request_for_the_service() {
    use envoy_types::pb::envoy::config::core::v3::{grpc_service::TargetSpecifier, GrpcService};
    use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
    use stagedoor_filter_core::signature::replay;

    let digest = "ab".repeat(32);
    let request = RateLimitRequest::decode(replay::rate_limit_request(&digest, 600_000).as_slice()).unwrap();
    assert_eq!(request.domain, crate::translate::RATE_LIMIT_DOMAIN);
    assert_eq!(request.hits_addend, 1);
    let entries: Vec<(String, String)> = request.descriptors[0].entries.iter().map(|e| (e.key.clone(), e.value.clone())).collect();
    assert_eq!(entries, [(String::from("signature_replay"), digest), (String::from("window_ms"), String::from("600000"))]);
    let service = GrpcService::decode(replay::grpc_service("stagedoor_ratelimit").as_slice()).unwrap();
    let Some(TargetSpecifier::EnvoyGrpc(envoy)) = service.target_specifier else { panic!("{service:?}") };
    assert_eq!(envoy.cluster_name, "stagedoor_ratelimit");
    for (code, verdict) in [(1, replay::ReplayVerdict::FirstUse), (2, replay::ReplayVerdict::Replayed), (0, replay::ReplayVerdict::Unreadable)] {
        let mut response = RateLimitResponse { overall_code: code, ..Default::default() };
        response.response_headers_to_add.push(Default::default());
        assert_eq!(replay::read_verdict(&response.encode_to_vec()), verdict, "code {code}");
    }
}
