use serde_json::{json, Value};

use super::params::{parse_query, QueryError};
use super::*;

fn schema(s: Value) -> Schema {
    Schema::compile(&s).unwrap()
}

fn fields(violations: &[Violation]) -> Vec<(&str, &str)> {
    violations.iter().map(|v| (v.field.as_str(), v.rule)).collect()
}

#[test]
fn every_violation_is_reported_with_its_pointer() {
    let s = schema(json!({
        "type": "object",
        "required": ["name", "address", "capacity"],
        "additionalProperties": false,
        "properties": {
            "name": {"type": "string", "minLength": 3, "maxLength": 100},
            "address": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}},
            "capacity": {"type": "integer", "minimum": 1},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "maxItems": 2}
        }
    }));
    let doc = json!({"name": "ab", "address": {}, "capacity": 0, "tags": ["a", "c", "b"], "extra": 1});
    assert_eq!(
        fields(&s.validate(&doc)),
        [
            ("/address/city", "required"),
            ("/capacity", "minimum"),
            ("/extra", "additionalProperties"),
            ("/name", "minLength"),
            ("/tags", "maxItems"),
            ("/tags/1", "enum"),
        ]
    );
    let ok = json!({"name": "abc", "address": {"city": "Paris"}, "capacity": 1, "tags": ["b"]});
    assert_eq!(s.validate(&ok), []);
}

#[test]
fn a_value_of_the_wrong_type_is_one_violation() {
    let s = schema(json!({"type": "string", "minLength": 3, "format": "uuid"}));
    let v = s.validate(&json!(12));
    assert_eq!(fields(&v), [("", "type")]);
    assert_eq!(v[0].message, "must be a string");
}

#[test]
fn integers_are_numbers_without_a_fraction() {
    let s = schema(json!({"type": "integer"}));
    assert_eq!(s.validate(&json!(3)), []);
    assert_eq!(s.validate(&json!(3.0)), []);
    assert_eq!(fields(&s.validate(&json!(3.5))), [("", "type")]);
    let either = schema(json!({"type": ["integer", "null"]}));
    assert_eq!(either.validate(&Value::Null), []);
    assert_eq!(either.validate(&json!("x"))[0].message, "must be an integer or null");
}

#[test]
fn bounds_inclusive_and_exclusive() {
    let price = schema(json!({"type": "number", "exclusiveMinimum": 0, "maximum": 100}));
    assert_eq!(fields(&price.validate(&json!(0))), [("", "exclusiveMinimum")]);
    assert_eq!(price.validate(&json!(0.01)), []);
    assert_eq!(price.validate(&json!(100)), []);
    assert_eq!(fields(&price.validate(&json!(100.5))), [("", "maximum")]);
    assert_eq!(price.validate(&json!(0))[0].message, "must be greater than 0");
}

#[test]
fn lengths_count_code_points() {
    let s = schema(json!({"type": "string", "minLength": 3, "maxLength": 3}));
    assert_eq!(s.validate(&json!("été")), []);
    assert_eq!(fields(&s.validate(&json!("ét"))), [("", "minLength")]);
}

#[test]
fn enum_and_const_compare_numbers_by_value() {
    let s = schema(json!({"enum": ["asc", "desc", 1]}));
    assert_eq!(s.validate(&json!(1.0)), []);
    assert_eq!(s.validate(&json!("up"))[0].message, r#"must be one of "asc", "desc", 1"#);
    assert_eq!(fields(&schema(json!({"const": true})).validate(&json!(false))), [("", "enum")]);
}

#[test]
fn patterns_search_and_use_ascii_classes() {
    let s = schema(json!({"type": "string", "pattern": "^\\+?[1-9]\\d{1,14}$"}));
    assert_eq!(s.validate(&json!("+14155550100")), []);
    assert_eq!(fields(&s.validate(&json!("0123"))), [("", "pattern")]);
    assert_eq!(fields(&s.validate(&json!("+1415555010٣"))), [("", "pattern")], "\\d is ASCII only");
    let unanchored = schema(json!({"pattern": "b+"}));
    assert_eq!(unanchored.validate(&json!("abbc")), []);
}

#[test]
fn formats() {
    let cases = [
        ("uuid", "0f8fad5b-d9cb-469f-a165-70867728950e", true),
        ("uuid", "0F8FAD5B-D9CB-469F-A165-70867728950E", true),
        ("uuid", "0f8fad5b-d9cb-469f-a165-70867728950", false),
        ("uuid", "0f8fad5bd9cb-469f-a165-70867728950e0", false),
        ("uuid", "0f8fad5b-d9cb-469f-a165-70867728950g", false),
        ("email", "ops@venue.example", true),
        ("email", "ops@localhost", false),
        ("email", "two@@venue.example", false),
        ("email", "sp ace@venue.example", false),
        ("email", "@venue.example", false),
        ("email", "ops@venue..example", false),
        ("date-time", "2026-12-01T15:04:05Z", true),
        ("date-time", "2026-12-01T15:04:05.123+01:00", true),
        ("date-time", "2024-02-29T00:00:00z", true),
        ("date-time", "2026-02-29T00:00:00Z", false),
        ("date-time", "2026-12-01", false),
        ("date-time", "2026-13-01T00:00:00Z", false),
        ("date-time", "2026-12-01T24:00:00Z", false),
        ("date-time", "2026-12-01T15:04:05.Z", false),
        ("date-time", "2026-12-01T15:04:05+0100", false),
        ("e164", "+14155550100", true),
        ("e164", "14155550100", true),
        ("e164", "+0123", false),
        ("e164", "+1", false),
        ("e164", "+1234567890123456", false),
    ];
    for (format, value, valid) in cases {
        let s = schema(json!({"type": "string", "format": format}));
        assert_eq!(s.validate(&json!(value)).is_empty(), valid, "{format} {value}");
    }
}

#[test]
fn additional_properties_may_have_a_schema() {
    let s = schema(json!({"type": "object", "properties": {"a": {}}, "additionalProperties": {"type": "integer"}}));
    assert_eq!(fields(&s.validate(&json!({"a": "x", "b": 1, "c": "y"}))), [("/c", "type")]);
}

#[test]
fn pointers_escape_slash_and_tilde() {
    let s = schema(json!({"type": "object", "required": ["a/b", "c~d"]}));
    assert_eq!(fields(&s.validate(&json!({}))), [("/a~1b", "required"), ("/c~0d", "required")]);
}

#[test]
fn schema_errors_name_the_keyword_path() {
    let cases = [
        (json!({"properties": {"name": {"minLenght": 3}}}), "/properties/name/minLenght", "not supported"),
        (json!({"properties": {"n": {"format": "ipv4"}}}), "/properties/n/format", "unknown format"),
        (json!({"items": {"type": "text"}}), "/items/type", "unknown type"),
        (json!({"pattern": "(("}), "/pattern", "not supported"),
        (json!({"pattern": "\\p{L}"}), "/pattern", "not supported"),
        (json!({"minLength": -1}), "/minLength", "non-negative"),
        (json!({"minimum": 5, "maximum": 1}), "/", "minimum is above maximum"),
        (json!({"minimum": 1, "exclusiveMinimum": 0}), "/", "both"),
        (json!({"required": ["a"], "additionalProperties": false}), "/", "requires \"a\""),
        (json!({"required": ["a", "a"]}), "/required", "twice"),
        (json!({"properties": {"a/b": 3}}), "/properties/a~1b", "must be an object"),
        (json!(true), "/", "must be an object"),
    ];
    for (s, at, reason) in cases {
        let error = Schema::compile(&s).unwrap_err();
        assert_eq!(error.at, at, "{s}");
        assert!(error.reason.contains(reason), "{s}: {error}");
    }
}

#[test]
fn deep_schemas_are_refused_not_recursed_into() {
    let mut deep = json!({"type": "string"});
    for _ in 0..=MAX_SCHEMA_DEPTH {
        deep = json!({"items": deep});
    }
    let error = Schema::compile(&deep).unwrap_err();
    assert!(error.reason.contains("deeper"), "{error}");
}

#[test]
fn annotations_are_ignored() {
    let s = schema(json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "t", "default": 1, "type": "integer"}));
    assert_eq!(s.validate(&json!(2)), []);
}

#[test]
fn params_are_typed_by_their_schema() {
    let s = schema(json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "page": {"type": "integer", "minimum": 1},
            "flag": {"type": "boolean"},
            "sortBy": {"type": "string"},
            "ids": {"type": "array", "items": {"type": "integer"}}
        }
    }));
    let object = s.params_object([("page", "2"), ("flag", "true"), ("sortBy", "10"), ("ids", "1"), ("ids", "2")]);
    assert_eq!(object, json!({"page": 2, "flag": true, "sortBy": "10", "ids": [1, 2]}));
    assert_eq!(s.validate(&object), []);
    let bad = s.params_object([("page", "abc"), ("page", "3"), ("x", "1")]);
    assert_eq!(fields(&s.validate(&bad)), [("/page", "type"), ("/x", "additionalProperties")]);
}

#[test]
fn query_strings_decode() {
    assert_eq!(
        parse_query("a=1&&b=x%20y+z&c").unwrap(),
        [("a".into(), "1".into()), ("b".into(), "x y z".into()), ("c".into(), String::new())]
    );
    assert_eq!(parse_query("a=%2"), Err(QueryError::BadEscape));
    assert_eq!(parse_query("a=%zz"), Err(QueryError::BadEscape));
    assert_eq!(parse_query("a=%ff"), Err(QueryError::NotUtf8));
}
