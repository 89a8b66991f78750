//! A document against a compiled [`Node`]: every violation, each at its JSON pointer.

use serde_json::Value;

use super::{push_token, Additional, Bound, JsonType, Node, Violation};

pub(super) fn node(node: &Node, value: &Value, at: &mut String, out: &mut Vec<Violation>) {
    if let Some(types) = &node.types {
        if !types.iter().any(|t| is_of(*t, value)) {
            // The other keywords speak of a value of the right type: one violation is the
            // honest report for a value of the wrong one.
            out.push(violation(at, "type", format!("must be {}", type_names(types))));
            return;
        }
    }
    if let Some(allowed) = &node.allowed {
        if !allowed.iter().any(|a| json_eq(a, value)) {
            out.push(violation(at, "enum", format!("must be one of {}", list(allowed))));
            return;
        }
    }
    match value {
        Value::Number(n) => number(node, n.as_f64().unwrap_or(f64::NAN), at, out),
        Value::String(s) => string(node, s, at, out),
        Value::Array(items) => array(node, items, at, out),
        Value::Object(members) => object(node, members, at, out),
        Value::Null | Value::Bool(_) => {}
    }
}

fn number(node: &Node, n: f64, at: &str, out: &mut Vec<Violation>) {
    if let Some(Bound { value, exclusive }) = node.minimum {
        if n < value || (exclusive && n == value) {
            let (rule, relation) = if exclusive { ("exclusiveMinimum", "greater than") } else { ("minimum", "at least") };
            out.push(violation(at, rule, format!("must be {relation} {value}")));
        }
    }
    if let Some(Bound { value, exclusive }) = node.maximum {
        if n > value || (exclusive && n == value) {
            let (rule, relation) = if exclusive { ("exclusiveMaximum", "less than") } else { ("maximum", "at most") };
            out.push(violation(at, rule, format!("must be {relation} {value}")));
        }
    }
}

fn string(node: &Node, s: &str, at: &str, out: &mut Vec<Violation>) {
    // JSON Schema counts code points, not bytes.
    let length = s.chars().count();
    if let Some(min) = node.min_length.filter(|min| length < *min) {
        out.push(violation(at, "minLength", format!("must be at least {min} characters long")));
    }
    if let Some(max) = node.max_length.filter(|max| length > *max) {
        out.push(violation(at, "maxLength", format!("must be at most {max} characters long")));
    }
    if let Some(pattern) = node.pattern.as_ref().filter(|p| !p.is_match(s)) {
        out.push(violation(at, "pattern", format!("must match the pattern {}", pattern.source())));
    }
    if let Some(format) = node.format.filter(|f| !f.is_valid(s)) {
        out.push(violation(at, "format", format!("must be a valid {}", format.name())));
    }
}

fn array(node: &Node, items: &[Value], at: &mut String, out: &mut Vec<Violation>) {
    if let Some(min) = node.min_items.filter(|min| items.len() < *min) {
        out.push(violation(at, "minItems", format!("must have at least {min} items")));
    }
    if let Some(max) = node.max_items.filter(|max| items.len() > *max) {
        out.push(violation(at, "maxItems", format!("must have at most {max} items")));
    }
    let Some(item_schema) = &node.items else { return };
    for (index, item) in items.iter().enumerate() {
        let len = at.len();
        push_token(at, &index.to_string());
        self::node(item_schema, item, at, out);
        at.truncate(len);
    }
}

fn object(node: &Node, members: &serde_json::Map<String, Value>, at: &mut String, out: &mut Vec<Violation>) {
    for name in node.required.iter().filter(|name| !members.contains_key(*name)) {
        let len = at.len();
        push_token(at, name);
        out.push(violation(at, "required", String::from("is required")));
        at.truncate(len);
    }
    for (name, value) in members {
        let len = at.len();
        push_token(at, name);
        match (node.properties.get(name), &node.additional) {
            (Some(schema), _) => self::node(schema, value, at, out),
            (None, Additional::Checked(schema)) => self::node(schema, value, at, out),
            (None, Additional::Refused) => out.push(violation(at, "additionalProperties", String::from("is not allowed"))),
            (None, Additional::Allowed) => {}
        }
        at.truncate(len);
    }
}

fn is_of(t: JsonType, value: &Value) -> bool {
    match (t, value) {
        (JsonType::Null, Value::Null)
        | (JsonType::Boolean, Value::Bool(_))
        | (JsonType::Object, Value::Object(_))
        | (JsonType::Array, Value::Array(_))
        | (JsonType::Number, Value::Number(_))
        | (JsonType::String, Value::String(_)) => true,
        // 1.0 is an integer in JSON Schema: the value counts, not its spelling.
        (JsonType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

/// Equality as JSON Schema means it: numbers by value (1 == 1.0).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn type_names(types: &[JsonType]) -> String {
    let names: Vec<&str> = types
        .iter()
        .map(|t| match t {
            JsonType::Null => "null",
            JsonType::Boolean => "a boolean",
            JsonType::Object => "an object",
            JsonType::Array => "an array",
            JsonType::Number => "a number",
            JsonType::Integer => "an integer",
            JsonType::String => "a string",
        })
        .collect();
    names.join(" or ")
}

fn list(values: &[Value]) -> String {
    let shown: Vec<String> = values.iter().map(Value::to_string).collect();
    shown.join(", ")
}

fn violation(at: &str, rule: &'static str, message: String) -> Violation {
    Violation { field: at.to_owned(), rule, message }
}
