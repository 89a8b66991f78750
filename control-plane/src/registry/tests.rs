use super::*;

const GOOD_SERVICES: &str = r#"
services:
  - name: venue
    routes: [{ prefix: /api/v1/venues }]
    instances: [{ address: 127.0.0.1, port: 3002 }]
  - name: payment
    routes:
      - { prefix: /api/v1/payments }
      - { prefix: /webhooks, upstream_prefix: /api/v1/webhooks }
    instances: [{ address: payment.internal, port: 3005 }]
    public_paths: ["/webhooks/*"]
"#;

fn good() -> String {
    crate::test_support::registry_yaml(GOOD_SERVICES)
}

/// The error of a whole check: the registry's rules, then the filter compiler's
/// (`translate::check`), both naming the file as `stagedoor validate` does.
fn error_of(yaml: &str) -> String {
    match Registry::parse("reg.yaml", yaml) {
        Err(e) => e.to_string(),
        Ok(registry) => crate::translate::check(&registry, None).unwrap_err().in_file("reg.yaml").to_string(),
    }
}

/// One owner per rule, and the filter config compiled once per edit: a public path only
/// the filter's compiler refuses passes the registry's rules and is refused by
/// `translate::check` (as `translate` runs it on the config it pushes), named the same way.
#[test]
fn the_registry_leaves_the_filters_rules_to_translate_check() {
    let yaml = good().replace("/webhooks/*", "/webhooks/*/x");
    let registry = Registry::parse("reg.yaml", &yaml).expect("the registry's own rules pass");
    let refused = crate::translate::check(&registry, None).unwrap_err();
    assert_eq!(refused.to_string(), "service \"payment\": public_paths[0]: '*' is only allowed as a final '/*'");
    let translated = crate::translate::translate(&registry, &LiveInstances::new(), &[], &crate::test_support::translate_options(8080));
    assert!(matches!(translated, Err(crate::translate::TranslateError::FilterConfig(r)) if r == refused));
}

#[test]
fn the_shipped_registry_is_valid_and_has_the_19_services() {
    let registry = crate::test_support::shipped_registry("registry-test");
    assert_eq!(registry.services.len(), 19);
    // HTTPS at the edge by default, the plain port redirecting to it.
    let edge = registry.edge_tls.as_ref().unwrap();
    assert_eq!((edge.port, edge.http), (8443, crate::registry::edge::PlainHttp::Redirect));
    assert_eq!(edge.certificates[0].server_names, ["localhost"]);
    let auth = &registry.services["auth"];
    for public in ["/api/v1/auth/login", "/api/v1/auth/register", "/api/v1/auth/refresh"] {
        assert!(auth.public_paths.iter().any(|p| p == public), "{public}");
    }
    assert!(registry.services["payment"].public_paths.iter().any(|p| p == "/webhooks/*"));
}

#[test]
fn a_good_registry_parses_in_name_order() {
    let registry = Registry::parse("reg.yaml", &good()).unwrap();
    let names: Vec<_> = registry.services.keys().cloned().collect();
    assert_eq!(names, ["payment", "venue"]);
}

#[test]
fn the_version_is_a_content_hash() {
    let a = Registry::parse("a", &good()).unwrap();
    let b = Registry::parse("b", &good().replace("services:", "# comments change nothing\nservices:")).unwrap();
    assert_eq!(a.version, b.version);
    let c = Registry::parse("c", &good().replace("3002", "3003")).unwrap();
    assert_ne!(a.version, c.version);
    // Reordering services changes nothing Envoy sees, so not the version either.
    let reordered = crate::test_support::AUTH.to_owned() + "services:\n  - name: b\n    routes: [{prefix: /b}]\n  - name: a\n    routes: [{prefix: /a}]\n";
    let ordered = crate::test_support::AUTH.to_owned() + "services:\n  - name: a\n    routes: [{prefix: /a}]\n  - name: b\n    routes: [{prefix: /b}]\n";
    assert_eq!(Registry::parse("x", &reordered).unwrap().version, Registry::parse("y", &ordered).unwrap().version);
}

#[test]
fn errors_name_the_file_the_service_and_the_field() {
    assert_eq!(
        error_of(&good().replace("prefix: /api/v1/venues", "prefix: api/v1/venues")),
        "reg.yaml: service \"venue\": routes[0].prefix: must start with '/'"
    );
    assert_eq!(
        error_of(&good().replace("port: 3002", "port: 0")),
        "reg.yaml: service \"venue\": instances[0].port: must be 1-65535"
    );
    assert_eq!(
        error_of(&good().replace("/webhooks/*", "/webhooks/*/x")),
        "reg.yaml: service \"payment\": public_paths[0]: '*' is only allowed as a final '/*'"
    );
    assert!(error_of(&good().replace("name: venue", "name: Venue")).contains("service \"Venue\": name"));
    assert!(error_of(&good().replace("payment.internal", "bad host!")).contains("instances[0].address"));
    assert!(error_of(&good().replace("/api/v1/venues", "/api/v1/venues/")).contains("must not end with '/'"));
    assert!(error_of(&good().replace("/api/v1/venues", "/api/../venues")).contains("routes[0].prefix"));
    assert!(error_of(&good().replace("/api/v1/venues", "/health")).contains("answered by the gateway"));
}

#[test]
fn two_services_cannot_claim_one_prefix_or_one_name() {
    let dup_prefix = good().replace("/api/v1/payments", "/api/v1/venues");
    assert_eq!(
        error_of(&dup_prefix),
        "reg.yaml: service \"payment\": routes[0].prefix: /api/v1/venues is already routed to service \"venue\""
    );
    let dup_name = good().replace("name: payment", "name: venue");
    assert!(error_of(&dup_name).contains("is defined twice"));
}

#[test]
fn unknown_fields_and_bad_syntax_are_refused_with_a_location() {
    let typo = good().replace("public_paths", "public_path");
    let e = error_of(&typo);
    assert!(e.starts_with("reg.yaml: "), "{e}");
    assert!(e.contains("unknown field `public_path`"), "{e}");
    assert!(e.contains("line"), "{e}");
    assert!(error_of("services: [").starts_with("reg.yaml: "));
    assert!(error_of(&crate::test_support::registry_yaml("services:\n  - name: x\n")).contains("missing field `routes`"));
    assert!(error_of("services: []").contains("missing field `auth`"));
}

#[test]
fn auth_rules_and_roles_are_checked_by_the_filters_own_compiler() {
    let with_rule = good().replace(
        "    public_paths: [\"/webhooks/*\"]",
        "    public_paths: [\"/webhooks/*\"]\n    rules: [{ method: post, path: /api/v1/payments, permission: payments:process }]",
    );
    assert_eq!(
        error_of(&with_rule),
        "reg.yaml: service \"payment\": rules[0]: method \"post\" must be an upper-case HTTP method or '*'"
    );
    let short_secret = good().replace("unit-test-secret-unit-test-secret-0123", "short");
    assert_eq!(error_of(&short_secret), "reg.yaml: auth.keys[0]: secret: must be at least 32 bytes (256 bits) for HS256, the size of its hash (RFC 7518 3.2)");
    let rsa_as_hmac = good().replace("[HS256]", "[RS256]").replace("      dev: true\n", "");
    assert!(error_of(&rsa_as_hmac).contains("auth.keys[0]"), "{}", error_of(&rsa_as_hmac));
    let roles = good().replace("services:", "roles:\n  Bad_Role: { permissions: [], venue_scoped: false }\nservices:");
    assert!(error_of(&roles).contains("roles"), "{}", error_of(&roles));
}

#[test]
fn secrets_come_from_the_environment_and_are_never_written_back() {
    let yaml = good().replace("secret: unit-test-secret-unit-test-secret-0123", "secret_env: TEST_JWT_SECRET");
    let env = |name: &str| (name == "TEST_JWT_SECRET").then(|| "from-the-environment-0123456789abcdef".to_owned());
    let registry = Registry::parse_with_env("reg.yaml", &yaml, &env).unwrap();
    assert_eq!(registry.keys[0].secret.as_deref(), Some("from-the-environment-0123456789abcdef"));
    let e = Registry::parse_with_env("reg.yaml", &yaml, &|_| None).unwrap_err().to_string();
    assert_eq!(e, "reg.yaml: auth.keys[0]: secret_env: TEST_JWT_SECRET is not set in the control plane's environment");
    let literal = Registry::parse("reg.yaml", &good()).unwrap();
    let written = serde_yaml::to_string(&literal.to_file(true)).unwrap();
    assert!(!written.contains("unit-test-secret"), "{written}");
    assert!(written.contains("<redacted>"));
    let with_identity = good().replace("services:", "identity: { signing_key: identity-key-identity-key-identity-key }\nservices:");
    let written = serde_yaml::to_string(&Registry::parse("reg.yaml", &with_identity).unwrap().to_file(true)).unwrap();
    assert!(!written.contains("identity-key-identity"), "{written}");
}

#[test]
fn webhook_secrets_resolve_and_their_paths_must_be_routed() {
    let with_hook = good().replace("services:", "webhooks: [{ path: /webhooks/stripe, stripe_secret_env: STRIPE_SECRET }]\nservices:");
    let env = |name: &str| (name == "STRIPE_SECRET").then(|| "whsec_from_env".to_owned());
    let registry = Registry::parse_with_env("reg.yaml", &with_hook, &env).unwrap();
    assert_eq!(registry.webhooks[0].stripe_secret, "whsec_from_env");
    let unrouted = with_hook.replace("/webhooks/stripe", "/nowhere/stripe");
    let e = Registry::parse_with_env("reg.yaml", &unrouted, &env).unwrap_err().to_string();
    assert_eq!(e, "reg.yaml: webhooks[0]: path: /nowhere/stripe is not routed to any service");
    let e = Registry::parse_with_env("reg.yaml", &with_hook, &|_| None).unwrap_err().to_string();
    assert!(e.contains("webhooks[0]: stripe_secret_env: STRIPE_SECRET is not set"), "{e}");
}

#[test]
fn a_registry_over_the_size_limit_is_refused_before_it_is_parsed() {
    let padding = format!("# {}\n", "x".repeat(input::MAX_REGISTRY_BYTES));
    let e = error_of(&(good() + &padding));
    assert_eq!(e, format!("reg.yaml: {} bytes is over the registry's limit of 4000000 bytes", good().len() + padding.len()));
}

#[test]
fn errors_echo_at_most_a_bounded_part_of_a_value() {
    let huge = "a".repeat(100_000);
    for yaml in [
        good().replace("port: 3002", &format!("port: {huge}")),
        good().replace("/api/v1/payments", &format!("/api/v1/venues{huge}")).replace("prefix: /api/v1/venues }", &format!("prefix: /api/v1/venues{huge} }}")),
        good().replace("services:", &format!("cors: {{ allowed_origins: [{huge}] }}\nservices:")),
    ] {
        let e = error_of(&yaml);
        assert!(e.len() < 1_000, "{} bytes: {}", e.len(), &e[..300]);
        assert!(e.contains("bytes cut ...]"), "{e}");
    }
    let e = error_of(&good().replace("port: 3002", &format!("port: {huge}")));
    assert!(e.ends_with(", expected u16 at line 12 column 45"), "the location survives the cut: {e}");
}

#[test]
fn unknown_fields_and_wrong_types_name_the_service_not_its_index() {
    let typo = good().replace("public_paths", "public_path");
    let e = error_of(&typo);
    assert!(e.starts_with("reg.yaml: service \"payment\": unknown field `public_path`"), "{e}");
    let wrong_type = good().replace("port: 3002", "port: many");
    let e = error_of(&wrong_type);
    assert!(e.starts_with("reg.yaml: service \"venue\": instances[0].port: invalid type"), "{e}");
    assert!(!e.contains("services["), "{e}");
}

#[test]
fn validation_schemas_are_checked_by_the_filters_own_compiler_naming_route_and_schema_path() {
    let with_schema = |schema: &str| {
        good().replace(
            "    public_paths: [\"/webhooks/*\"]",
            &format!("    public_paths: [\"/webhooks/*\"]\n    validation:\n      - {{ method: POST, path: /api/v1/payments/process, body: {schema} }}"),
        )
    };
    assert!(Registry::parse("reg.yaml", &with_schema("{ type: object, required: [amount] }")).is_ok());
    assert_eq!(
        error_of(&with_schema("{ properties: { amount: { type: number, minimun: 1 } } }")),
        "reg.yaml: service \"payment\": validation[0] (POST /api/v1/payments/process).body/properties/amount/minimun: keyword \"minimun\" is not supported"
    );
    assert!(error_of(&with_schema("{ pattern: \"((\" }")).contains(".body/pattern: pattern"));
}

/// A JWKS key's fields are checked by `stagedoor validate`'s path, named by the file's
/// index; a static key after it keeps its own index in errors, and the dev key is found.
#[test]
fn jwks_keys_are_validated_and_leave_the_other_keys_named_as_in_the_file() {
    let jwks_key = "    - jwks_uri: https://idp.example/jwks\n      issuer: https://idp.example/\n      algorithms: [RS256]\n";
    let with_jwks_first = |second: &str| {
        good().replace("  keys:\n", &format!("  keys:\n{jwks_key}")).replace("      dev: true\n", &format!("      dev: true\n{second}"))
    };
    let registry = Registry::parse("reg.yaml", &with_jwks_first("")).unwrap();
    assert_eq!(registry.jwks.len(), 1);
    assert!(registry.dev_key().is_some(), "the dev key after a JWKS key is still found");
    assert_eq!(
        error_of(&with_jwks_first("").replace("https://idp.example/jwks", "http://idp.example/jwks")),
        "reg.yaml: auth.keys[0]: jwks_uri: must be https:// (keys fetched in the clear could be anyone's)"
    );
    let short = with_jwks_first("    - kid: short\n      algorithms: [HS256]\n      secret: too-short\n");
    assert!(error_of(&short).starts_with("reg.yaml: auth.keys[2] (kid \"short\"): secret:"), "{}", error_of(&short));
    let stray = good().replace("      dev: true\n", "      dev: true\n      refresh_secs: 60\n");
    assert_eq!(error_of(&stray), "reg.yaml: auth.keys[0]: refresh_secs: only a key with `jwks_uri` has one");
}

#[test]
fn a_registry_rebased_on_the_one_it_replaces_shares_each_unchanged_entry_and_equals_itself() {
    let before = Registry::parse("r", &crate::test_support::registry_yaml(
        "services:\n  - name: a\n    routes: [{prefix: /a}]\n  - name: b\n    routes: [{prefix: /b}]\n  - name: c\n    routes: [{prefix: /c}]\n",
    ))
    .unwrap();
    let parsed = Registry::parse("r", &crate::test_support::registry_yaml(
        "services:\n  - name: a\n    routes: [{prefix: /a}]\n  - name: b\n    routes: [{prefix: /b2}]\n  - name: d\n    routes: [{prefix: /d}]\n",
    ))
    .unwrap();
    let rebased = parsed.clone().rebased_on(&before);
    assert_eq!(rebased, parsed);
    let shared = |name: &str| std::sync::Arc::ptr_eq(&rebased.services[name], &before.services[name]);
    assert!(shared("a"), "a is unchanged: the previous entry");
    assert!(!shared("b"), "b changed: the new entry");
    assert!(std::sync::Arc::ptr_eq(&rebased.services["d"], &parsed.services["d"]));
    assert!(!rebased.services.contains_key("c"));
    // What differs between the two is what changed, found without comparing the rest.
    let differs: Vec<&String> = before.services.diff(&rebased.services).map(|d| match d {
        imbl::ordmap::DiffItem::Add(k, _) | imbl::ordmap::DiffItem::Remove(k, _) | imbl::ordmap::DiffItem::Update { new: (k, _), .. } => k,
    }).collect();
    assert_eq!(differs, ["b", "c", "d"]);
}
