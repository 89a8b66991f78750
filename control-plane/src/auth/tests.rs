use super::tokens::digest;
use super::*;
use crate::tls::identity::PeerIdentity;

const FILE: &str = r#"
tokens:
  - name: reader
    sha256: SHA_READER
    scopes: [read]
  - name: autoscaler
    sha256: SHA_SCALER
    scopes: [register, read]
    services: [venue]
  - name: deployer
    sha256: SHA_DEPLOYER
    scopes: [apply, revoke, register]
"#;

fn tokens() -> ApiTokens {
    let text = FILE
        .replace("SHA_READER", &digest("reader-secret"))
        .replace("SHA_SCALER", &digest("scaler-secret"))
        .replace("SHA_DEPLOYER", &digest("deployer-secret").to_uppercase());
    ApiTokens::parse(&text).unwrap()
}

fn caller(token: &str) -> Caller {
    authenticate(None, Some(&format!("Bearer {token}")), &tokens(), false)
}

fn code(result: Result<(), Refusal>) -> &'static str {
    match result {
        Ok(()) => "ok",
        Err(Refusal::Unauthenticated(_)) => "unauthenticated",
        Err(Refusal::PermissionDenied(_)) => "denied",
    }
}

#[test]
fn each_rpc_needs_its_scope() {
    let actions = [Action::Read, Action::Apply, Action::RevokeToken, Action::Register { service: "venue" }, Action::Register { service: "payment" }];
    let table = |c: &Caller| actions.iter().map(|a| code(authorize(c, *a))).collect::<Vec<_>>();
    assert_eq!(table(&caller("reader-secret")), ["ok", "denied", "denied", "denied", "denied"]);
    assert_eq!(table(&caller("scaler-secret")), ["ok", "denied", "denied", "ok", "denied"]);
    assert_eq!(table(&caller("deployer-secret")), ["denied", "ok", "ok", "ok", "ok"]);
    let operator = authenticate(Some(&PeerIdentity::Operator { name: "ops".into() }), None, &tokens(), false);
    assert_eq!(table(&operator), ["ok"; 5]);
    let envoy = authenticate(Some(&PeerIdentity::Envoy { node_id: "n".into() }), None, &tokens(), false);
    assert_eq!(table(&envoy), ["denied"; 5]);
    assert_eq!(table(&caller("wrong")), ["unauthenticated"; 5]);
    assert_eq!(table(&authenticate(None, None, &tokens(), false)), ["unauthenticated"; 5]);
    assert_eq!(table(&authenticate(None, Some("Basic abc"), &tokens(), false)), ["unauthenticated"; 5]);
}

#[test]
fn an_envoy_certificate_with_a_token_is_still_an_envoy() {
    let envoy = PeerIdentity::Envoy { node_id: "n".into() };
    let c = authenticate(Some(&envoy), Some("Bearer deployer-secret"), &tokens(), false);
    assert_eq!(c, Caller::Envoy { node_id: "n".into() });
    // An unrecognised certificate falls back to the token.
    let other = PeerIdentity::Unrecognised { subject: "CN=x".into() };
    assert!(matches!(authenticate(Some(&other), Some("Bearer reader-secret"), &tokens(), false), Caller::Token(_)));
}

#[test]
fn insecure_trusts_everyone_only_without_a_tokens_file() {
    assert_eq!(authenticate(None, None, &ApiTokens::default(), true), Caller::Insecure);
    assert!(matches!(authenticate(None, None, &tokens(), true), Caller::Anonymous { .. }));
    assert!(matches!(authenticate(None, None, &ApiTokens::default(), false), Caller::Anonymous { .. }));
}

#[test]
fn a_bad_tokens_file_names_the_entry() {
    let bad = |text: &str| ApiTokens::parse(text).unwrap_err();
    assert!(bad("tokens:\n  - {name: a, sha256: abc, scopes: [read]}\n").contains("tokens[0] (a).sha256"));
    assert!(bad(&format!("tokens:\n  - {{name: a, sha256: {}, scopes: []}}\n", digest("x"))).contains("scopes"));
    assert!(bad(&format!("tokens:\n  - {{name: a, sha256: {}, scopes: [admin]}}\n", digest("x"))).contains("admin"));
    let twice = format!("tokens:\n  - {{name: a, sha256: {d}, scopes: [read]}}\n  - {{name: b, sha256: {d}, scopes: [read]}}\n", d = digest("x"));
    assert!(bad(&twice).contains("twice"));
}

#[test]
fn an_audit_line_is_one_json_object() {
    let line = audit::line("token:deployer", "apply", serde_json::json!({"before": "a", "after": "b"}), Ok(()), 7);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["who"], "token:deployer");
    assert_eq!(v["outcome"]["result"], "ok");
    assert_eq!(v["at_unix_ms"], 7);
    let denied = tonic::Status::permission_denied("no");
    let v: serde_json::Value = serde_json::from_str(&audit::line("anonymous", "revoke", serde_json::Value::Null, Err(&denied), 7)).unwrap();
    assert_eq!(v["outcome"]["code"], "PermissionDenied");
}
