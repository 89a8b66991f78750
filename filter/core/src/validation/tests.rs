use serde_json::{json, Value};

use super::*;
use crate::config::{FilterConfig, ServiceConfig};
use crate::Policy;

fn route(method: &str, path: &str, body: Option<Value>, query: Option<Value>, params: Option<Value>) -> ValidationConfig {
    ValidationConfig { method: method.into(), path: path.into(), body, query, params, max_body_bytes: None }
}

fn purchase() -> ValidationConfig {
    route(
        "POST",
        "/api/v1/tickets/purchase",
        Some(json!({
            "type": "object", "required": ["eventId", "items"],
            "properties": {
                "eventId": {"type": "string", "format": "uuid"},
                "items": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["ticketTypeId", "quantity", "price"],
                    "properties": {
                        "ticketTypeId": {"type": "string"},
                        "quantity": {"type": "integer", "minimum": 1, "maximum": 10},
                        "price": {"type": "number", "exclusiveMinimum": 0}
                    }
                }}
            }
        })),
        None,
        None,
    )
}

fn policy(validation: Vec<ValidationConfig>) -> Result<Policy, crate::CompileError> {
    let mut config: FilterConfig = crate::decision::tests::config();
    config.services.push(ServiceConfig {
        name: "ticket".into(),
        prefixes: vec!["/api/v1/tickets".into()],
        public_paths: vec![],
        rules: vec![],
        request_headers: Default::default(),
        unmatched: Default::default(),
        validation,
        require_signatures: false,
        signed_routes: vec![],
        rbac_shadow: false,
    });
    Policy::compile(&config)
}

fn invalid(failure: ValidationFailure) -> Vec<(String, &'static str)> {
    match failure {
        ValidationFailure::Invalid(v) => v.into_iter().map(|v| (v.field, v.rule)).collect(),
        other => panic!("expected violations, got {other:?}"),
    }
}

#[test]
fn a_body_is_checked_and_every_violation_named_under_body() {
    let r = RouteValidation::compile(&purchase()).unwrap();
    let ok = br#"{"eventId":"0f8fad5b-d9cb-469f-a165-70867728950e","items":[{"ticketTypeId":"ga","quantity":2,"price":25.5}]}"#;
    assert_eq!(r.check_body(ok), Ok(vec![]));
    let bad = br#"{"eventId":"nope","items":[{"ticketTypeId":"ga","quantity":11,"price":0}]}"#;
    assert_eq!(
        invalid(ValidationFailure::Invalid(r.check_body(bad).unwrap())),
        [
            ("/body/eventId".into(), "format"),
            ("/body/items/0/price".into(), "exclusiveMinimum"),
            ("/body/items/0/quantity".into(), "maximum")
        ]
    );
    assert!(matches!(r.check_body(b"{\"eventId\": "), Err(ValidationFailure::NotJson(_))));
    assert!(matches!(r.check_body(b""), Err(ValidationFailure::NotJson(_))));
}

#[test]
fn bodies_over_the_limit_are_too_large() {
    let r = RouteValidation::compile(&ValidationConfig { max_body_bytes: Some(16), ..purchase() }).unwrap();
    assert_eq!(r.too_large(16), None);
    assert_eq!(r.too_large(17), Some(ValidationFailure::TooLarge { limit: 16 }));
    assert_eq!(r.check_body(&[b' '; 17]), Err(ValidationFailure::TooLarge { limit: 16 }));
    assert_eq!(RouteValidation::compile(&purchase()).unwrap().max_body_bytes, DEFAULT_MAX_BODY_BYTES);
}

#[test]
fn query_and_params_are_checked_at_the_head() {
    let pagination = json!({"type": "object", "additionalProperties": false, "properties": {
        "page": {"type": "integer", "minimum": 1}, "limit": {"type": "integer", "minimum": 1, "maximum": 100},
        "sortOrder": {"enum": ["asc", "desc"]}}});
    let id = json!({"type": "object", "properties": {"eventId": {"type": "string", "format": "uuid"}}});
    let p = policy(vec![
        route("GET", "/api/v1/tickets/events/{eventId}", None, Some(pagination), Some(id.clone())),
        ValidationConfig { path: "/api/v1/tickets/events/{eventId}/purchase".into(), params: Some(id), ..purchase() },
        purchase(),
    ])
    .unwrap();
    let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let target = format!("/api/v1/tickets/events/{uuid}?page=2&limit=100&sortOrder=desc");
    assert!(check_request_head(&p, "GET", &target).unwrap().is_none(), "checked, and no body to wait for");
    let failure = check_request_head(&p, "GET", "/api/v1/tickets/events/x?page=0&limit=101&sortOrder=up&q=1").unwrap_err();
    assert_eq!(
        invalid(failure),
        [
            ("/query/limit".into(), "maximum"),
            ("/query/page".into(), "minimum"),
            ("/query/q".into(), "additionalProperties"),
            ("/query/sortOrder".into(), "enum"),
            ("/params/eventId".into(), "format"),
        ]
    );
    assert_eq!(
        check_request_head(&p, "GET", "/api/v1/tickets/events/x?page=%zz").err(),
        Some(ValidationFailure::BadQuery(QueryError::BadEscape))
    );
    assert!(check_request_head(&p, "POST", "/api/v1/tickets/purchase").unwrap().is_some(), "the body must be waited for");
    assert!(check_request_head(&p, "POST", "/api/v1/tickets/PURCHASE").unwrap().is_some(), "case variants too");
    assert!(check_request_head(&p, "GET", "/api/v1/tickets/purchase").unwrap().is_none(), "other methods stream");
    // A route with a body schema reports the head's violations with the body's.
    let pending = check_request_head(&p, "POST", "/api/v1/tickets/events/x/purchase").unwrap().unwrap();
    assert_eq!(
        invalid(pending.check(br#"{"items":[]}"#).unwrap_err()),
        [("/params/eventId".into(), "format"), ("/body/eventId".into(), "required"), ("/body/items".into(), "minItems")]
    );
    let pending = check_request_head(&p, "POST", &format!("/api/v1/tickets/events/{uuid}/purchase")).unwrap().unwrap();
    assert!(matches!(pending.check(b"[1"), Err(ValidationFailure::NotJson(_))));
    assert!(check_request_head(&p, "POST", "/api/v1/events").unwrap().is_none(), "other services stream");
}

#[test]
fn config_errors_name_the_service_route_and_schema_path() {
    let mut bad = purchase();
    bad.body = Some(json!({"properties": {"items": {"items": {"properties": {"quantity": {"minimum": "1"}}}}}}));
    let error = policy(vec![purchase(), bad]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "service \"ticket\": validation[1] (POST /api/v1/tickets/purchase).body/properties/items/items/properties/quantity/minimum: must be a number"
    );
    let error = policy(vec![ValidationConfig { max_body_bytes: Some(0), ..purchase() }]).unwrap_err();
    assert_eq!(error.field, "validation[0] (POST /api/v1/tickets/purchase).max_body_bytes");
    let error = policy(vec![route("post", "/x", None, None, None)]).unwrap_err();
    assert_eq!(error.field, "validation[0] (post /x).path");
}

#[test]
fn replies_have_the_gateway_shape_with_details() {
    let failure = ValidationFailure::Invalid(vec![crate::schema::Violation {
        field: "/body/name".into(),
        rule: "minLength",
        message: "must be at least 3 characters long".into(),
    }]);
    let (status, body) = validation_reply(&failure, "rid", 0);
    assert_eq!(status, 422);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        json!({"statusCode": 422, "error": "Unprocessable Entity", "message": "Request validation failed",
            "code": "VALIDATION_FAILED", "requestId": "rid", "timestamp": "1970-01-01T00:00:00.000Z",
            "details": [{"field": "/body/name", "rule": "minLength", "message": "must be at least 3 characters long"}]})
    );
    let (status, body) = validation_reply(&ValidationFailure::TooLarge { limit: 10 }, "rid", 0);
    assert_eq!(status, 413);
    assert!(!body.contains("details"));
    assert_eq!(validation_reply(&ValidationFailure::NotJson("eof".into()), "rid", 0).0, 400);
}

/// Without a validated route anywhere the head check is one branch on every request; with
/// one, other services' requests still pass unchecked.
#[test]
fn a_policy_without_validated_routes_skips_the_head_check() {
    let none = policy(vec![]).unwrap();
    assert!(!none.validates);
    assert!(check_request_head(&none, "POST", "/api/v1/tickets/purchase").unwrap().is_none());
    let some = policy(vec![purchase()]).unwrap();
    assert!(some.validates);
    assert!(check_request_head(&some, "POST", "/api/v1/tickets/purchase").unwrap().is_some());
    assert!(check_request_head(&some, "POST", "/api/v1/events").unwrap().is_none());
}
