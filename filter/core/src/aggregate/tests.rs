use proptest::prelude::*;
use serde_json::{json, Value};

use super::config::{CompositeConfig, SourceConfig, DEFAULT_SOURCE_BYTES, DEFAULT_TOTAL_BYTES, MAX_SOURCES};
use super::*;

fn source(name: &str, service: &str, path: &str, required: bool) -> SourceConfig {
    SourceConfig {
        name: name.into(),
        key: None,
        service: service.into(),
        path: path.into(),
        required,
        timeout_ms: None,
        fallback: None,
    }
}

fn event_details() -> CompositeConfig {
    CompositeConfig {
        name: "event-details".into(),
        path: "/api/v1/aggregate/events/{eventId}".into(),
        permission: None,
        deadline_ms: 1000,
        max_source_bytes: DEFAULT_SOURCE_BYTES,
        max_total_bytes: DEFAULT_TOTAL_BYTES,
        sources: vec![
            source("event", "event", "/api/v1/events/{eventId}", true),
            SourceConfig { timeout_ms: Some(300), ..source("tickets", "ticket", "/api/v1/tickets/events/{eventId}/availability", true) },
            SourceConfig {
                fallback: Some(json!({"enabled": false})),
                key: Some("nftStatus".into()),
                ..source("nft", "minting", "/api/v1/minting/events/{eventId}/nft-config?x={eventId}", false)
            },
        ],
    }
}

const SERVICES: &[&str] = &["event", "ticket", "minting"];

fn compiled(config: &CompositeConfig) -> Composite {
    Composite::compile(config, SERVICES).unwrap()
}

fn refusal(config: &CompositeConfig) -> String {
    Composite::compile(config, SERVICES).unwrap_err().to_string()
}

#[test]
fn templates_fill_in_the_routes_params_in_path_and_query() {
    let composite = compiled(&event_details());
    let params = composite.matches("/api/v1/aggregate/events/e-42").unwrap();
    let calls = composite.calls(&params).unwrap();
    let paths: Vec<_> = calls.iter().map(|c| (c.cluster.as_str(), c.path.as_str(), c.timeout_ms)).collect();
    assert_eq!(paths, vec![
        ("svc_event", "/api/v1/events/e-42", 1000),
        ("svc_ticket", "/api/v1/tickets/events/e-42/availability", 300),
        ("svc_minting", "/api/v1/minting/events/e-42/nft-config?x=e-42", 1000),
    ]);
    assert_eq!(calls[0].authority, "event");
    assert!(composite.matches("/api/v1/aggregate/events").is_none());
    assert!(composite.matches("/api/v1/aggregate/events/1/x").is_none());
}

#[test]
fn a_param_that_could_become_another_segment_or_query_is_refused() {
    let composite = compiled(&event_details());
    for value in ["..", ".", "a%2Fb", "a%2e", "a?b", "a&b=c", "a#b", "a;b", "a b"] {
        let params = vec![("eventId", value)];
        assert_eq!(composite.calls(&params).unwrap_err(), UnsafeParam { name: "eventId".into() }, "{value}");
    }
    assert!(composite.calls(&vec![("eventId", "v1.2_x~y-z")]).is_ok());
}

#[test]
fn template_errors_name_what_is_wrong() {
    let with_path = |path: &str| {
        let mut c = event_details();
        c.sources[1].path = path.into();
        refusal(&c)
    };
    assert_eq!(with_path("/x/{venueId}"), "sources[1] (tickets).path: names {venueId}, which the route's path does not have");
    assert_eq!(with_path("/x/{eventId"), "sources[1] (tickets).path: has an unclosed or empty '{'");
    assert_eq!(with_path("/x/{}"), "sources[1] (tickets).path: has an unclosed or empty '{'");
    assert_eq!(with_path("x"), "sources[1] (tickets).path: must start with '/'");
    assert_eq!(with_path("/x y"), "sources[1] (tickets).path: has a character that is not allowed in a request target: ' '");
}

#[test]
fn bounds_and_rules_are_refused_naming_the_field() {
    let mut c = event_details();
    c.sources[2].service = "nft".into();
    assert_eq!(refusal(&c), "sources[2] (nft).service: no service \"nft\" in the registry");
    let mut c = event_details();
    c.sources.clear();
    assert_eq!(refusal(&c), format!("sources: needs 1 to {MAX_SOURCES} sources"));
    let mut c = event_details();
    c.sources = (0..=MAX_SOURCES).map(|i| source(&format!("s{i}"), "event", "/x", false)).collect();
    assert_eq!(refusal(&c), format!("sources: needs 1 to {MAX_SOURCES} sources"));
    let mut c = event_details();
    c.deadline_ms = 0;
    assert!(refusal(&c).starts_with("deadline_ms: "));
    let mut c = event_details();
    c.sources[0].timeout_ms = Some(1001);
    assert_eq!(refusal(&c), "sources[0] (event).timeout_ms: must be 1 to the route's deadline_ms (1000)");
    let mut c = event_details();
    c.sources[1].key = Some("event".into());
    assert!(refusal(&c).starts_with("sources[1] (tickets).key: key \"event\" is taken"), "{}", refusal(&c));
    let mut c = event_details();
    c.sources[0].fallback = Some(json!(null));
    assert!(refusal(&c).starts_with("sources[0] (event).fallback: "));
    let mut c = event_details();
    c.max_source_bytes = c.max_total_bytes + 1;
    assert!(refusal(&c).starts_with("max_source_bytes: "));
    let mut c = event_details();
    c.path = "/api/v1/aggregate/{bad-param}".into();
    assert!(refusal(&c).starts_with("path: "));
    let mut c = event_details();
    c.name = "Event Details".into();
    assert!(refusal(&c).starts_with("name: "));
    let mut c = event_details();
    c.permission = Some("nocolon".into());
    assert!(refusal(&c).starts_with("permission: "));
}

fn ok(body: Value) -> Answer {
    Answer::Response { status: 200, body: body.to_string().into_bytes() }
}

fn parse(reply: &Reply) -> Value {
    serde_json::from_str(&reply.body).unwrap()
}

fn header<'r>(reply: &'r Reply, name: &str) -> Option<&'r str> {
    reply.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

#[test]
fn every_source_answering_composes_all_of_them_and_says_completed() {
    let composite = compiled(&event_details());
    let mut fanout = Fanout::new(&composite, 1000, "req-1");
    assert_eq!(fanout.record(&composite, 2, ok(json!({"enabled": true})), 1010), None);
    assert_eq!(fanout.record(&composite, 0, ok(json!({"id": "e1"})), 1020), None);
    let reply = fanout.record(&composite, 1, ok(json!({"available": 3})), 1150).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(header(&reply, COMPLETED_HEADER), Some("true"));
    assert_eq!(header(&reply, "cache-control"), Some("no-store"));
    let body = parse(&reply);
    assert_eq!(body["event"], json!({"id": "e1"}));
    assert_eq!(body["tickets"], json!({"available": 3}));
    assert_eq!(body["nftStatus"], json!({"enabled": true}));
    assert_eq!(body["_metadata"]["completed"], json!(true));
    assert_eq!(body["_metadata"]["sources"], json!([
        {"name": "event", "required": true, "ok": true, "status": 200, "ms": 20, "fallback": false},
        {"name": "tickets", "required": true, "ok": true, "status": 200, "ms": 150, "fallback": false},
        {"name": "nft", "required": false, "ok": true, "status": 200, "ms": 10, "fallback": false},
    ]));
}

#[test]
fn a_failed_optional_source_gets_its_fallback_and_is_reported_as_failed() {
    let composite = compiled(&event_details());
    let mut fanout = Fanout::new(&composite, 0, "r");
    fanout.record(&composite, 0, ok(json!(1)), 5);
    fanout.record(&composite, 1, ok(json!(2)), 6);
    let reply = fanout.record(&composite, 2, Answer::Response { status: 500, body: b"{}".to_vec() }, 7).unwrap();
    assert_eq!((reply.status, header(&reply, COMPLETED_HEADER)), (200, Some("false")));
    let body = parse(&reply);
    assert_eq!(body["nftStatus"], json!({"enabled": false}));
    assert_eq!(body["_metadata"]["completed"], json!(false));
    assert_eq!(
        body["_metadata"]["sources"][2],
        json!({"name": "nft", "required": false, "ok": false, "status": 500, "ms": 7, "fallback": true, "error": "status"})
    );
}

#[test]
fn an_optional_source_that_times_out_gets_its_fallback_with_no_status() {
    let composite = compiled(&event_details());
    let mut fanout = Fanout::new(&composite, 0, "r");
    fanout.record(&composite, 0, ok(json!(1)), 5);
    fanout.record(&composite, 1, ok(json!(2)), 6);
    // Envoy answers a call past its timeout with its own 504.
    let reply = fanout.record(&composite, 2, Answer::Response { status: 504, body: b"upstream request timeout".to_vec() }, 1000).unwrap();
    let entry = &parse(&reply)["_metadata"]["sources"][2];
    assert_eq!((entry["ok"].clone(), entry["status"].clone(), entry["error"].clone()), (json!(false), Value::Null, json!("timeout")));
}

#[test]
fn a_required_failure_answers_502_at_once_naming_the_source() {
    let composite = compiled(&event_details());
    let mut fanout = Fanout::new(&composite, 0, "req-9");
    let reply = fanout.record(&composite, 0, Answer::Response { status: 503, body: Vec::new() }, 40).unwrap();
    assert_eq!(reply.status, 502);
    assert_eq!(header(&reply, COMPLETED_HEADER), Some("false"));
    let body = parse(&reply);
    assert_eq!(body["code"], "SOURCE_FAILED");
    assert_eq!(body["error"], "Bad Gateway");
    assert_eq!(body["requestId"], "req-9");
    assert!(body["message"].as_str().unwrap().contains("event"), "{body}");
    // The answers after the reply change nothing.
    assert_eq!(fanout.record(&composite, 1, ok(json!(1)), 50), None);
    assert_eq!(fanout.record(&composite, 0, ok(json!(1)), 50), None);
}

#[test]
fn a_required_timeout_answers_504_naming_the_source() {
    let composite = compiled(&event_details());
    let mut fanout = Fanout::new(&composite, 0, "r");
    let reply = fanout.record(&composite, 1, Answer::Nothing, 300).unwrap();
    let body = parse(&reply);
    assert_eq!((reply.status, body["code"].as_str()), (504, Some("SOURCE_TIMEOUT")));
    assert!(body["message"].as_str().unwrap().contains("tickets"));
    // Before its timeout, no answer is a failure, not a timeout.
    let mut fanout = Fanout::new(&composite, 0, "r");
    assert_eq!(fanout.record(&composite, 1, Answer::Nothing, 10).unwrap().status, 502);
}

#[test]
fn answers_past_the_size_bounds_or_not_json_count_as_failures() {
    let mut config = event_details();
    config.max_source_bytes = 10;
    config.max_total_bytes = 20;
    let composite = compiled(&config);
    let mut fanout = Fanout::new(&composite, 0, "r");
    assert_eq!(fanout.body_limit(&composite), 10);
    fanout.record(&composite, 0, ok(json!("123456")), 1); // 8 bytes
    assert_eq!(fanout.body_limit(&composite), 10);
    fanout.record(&composite, 1, ok(json!("1234567")), 1); // 9 bytes: 17 in all
    assert_eq!(fanout.body_limit(&composite), 3);
    let reply = fanout.record(&composite, 2, Answer::TooLarge { status: 200, size: 4 }, 2).unwrap();
    let entry = &parse(&reply)["_metadata"]["sources"][2];
    assert_eq!(entry["error"], "too_large");

    let composite = compiled(&event_details());
    let mut fanout = Fanout::new(&composite, 0, "r");
    let reply = fanout.record(&composite, 0, Answer::Response { status: 200, body: b"<html>".to_vec() }, 1).unwrap();
    assert_eq!(reply.status, 502);
    assert!(parse(&reply)["message"].as_str().unwrap().contains("not_json"));
}

#[test]
fn source_calls_carry_exactly_the_identity_set_and_the_request_id() {
    let composite = compiled(&event_details());
    let calls = composite.calls(&vec![("eventId", "e1")]).unwrap();
    let identity = vec![("x-tenant-id", String::from("t1")), ("x-user-id", String::from("u1"))];
    let headers = call_headers(&calls[0], &identity, "rid");
    assert_eq!(headers, vec![
        (":method", "GET"),
        (":path", "/api/v1/events/e1"),
        (":authority", "event"),
        ("x-request-id", "rid"),
        ("x-tenant-id", "t1"),
        ("x-user-id", "u1"),
    ]);
}

proptest! {
    /// Whatever a client puts in a path segment, a rendered call either is refused or has
    /// the template's segments and no query or traversal of the client's making.
    #[test]
    fn a_rendered_path_keeps_the_templates_shape(value in "[ -~]{0,12}") {
        let composite = compiled(&event_details());
        if let Ok(calls) = composite.calls(&vec![("eventId", value.as_str())]) {
            for call in &calls {
                let (path, query) = call.path.split_once('?').unwrap_or((&call.path, ""));
                prop_assert!(!path.split('/').any(|s| s == "." || s == ".."));
                prop_assert!(!call.path.contains('%') && !call.path.contains('#'));
                prop_assert_eq!(path.split('/').count(), if call.source == 0 { 5 } else { 7 });
                prop_assert!(!query.contains('&'));
            }
        }
    }
}

#[test]
fn a_composite_route_is_judged_by_its_own_permission_before_any_service_prefix() {
    use crate::decision::tests::{bearer, config, denial, token, Harness};
    let mut with_composite = config();
    with_composite.composites = vec![CompositeConfig {
        name: "dashboard".into(),
        // Under the event service's prefix, which would let any token through.
        path: "/api/v1/events/users/{userId}/dashboard".into(),
        permission: Some("tickets:view".into()),
        sources: vec![source("tickets", "event", "/api/v1/events/users/{userId}/tickets", true)],
        ..event_details()
    }];
    let mut h = Harness::with(with_composite);
    let customer = bearer(&token(json!({"role": "customer", "sub": "u1"})));
    let own = h.run("GET", "/api/v1/events/users/u1/dashboard", &[("authorization", &customer)]);
    assert!(matches!(own.decision, crate::Decision::Forward { identity: Some(_), .. }));
    let other = h.run("GET", "/api/v1/events/users/u2/dashboard", &[("authorization", &customer)]);
    assert_eq!(denial(&other), (403, "INSUFFICIENT_PERMISSIONS"));
    let anonymous = h.run("GET", "/api/v1/events/users/u1/dashboard", &[]);
    assert_eq!(denial(&anonymous), (401, "TOKEN_MISSING"));
    assert!(h.policy.composite_for("/api/v1/events/users/u1/dashboard").is_some());
    assert!(h.policy.composite_for("/api/v1/events/users/u1").is_none());
}
