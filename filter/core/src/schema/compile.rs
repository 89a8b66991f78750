//! Schema JSON -> [`Node`]: every keyword checked once, errors naming the schema path.

use serde_json::{Map, Value};

use super::{push_token, Additional, Bound, Format, JsonType, Node, Pattern, SchemaError};

/// Nesting bound for schemas (the filter compiles them in `on_configure`; recursion on a
/// deep schema must not exhaust the VM's stack). The original's deepest schema has 4.
pub const MAX_SCHEMA_DEPTH: usize = 32;

const ANNOTATIONS: [&str; 7] = ["$schema", "$id", "$comment", "title", "description", "default", "examples"];

pub(super) fn node(schema: &Value, at: &mut String, depth: usize) -> Result<Node, SchemaError> {
    if depth > MAX_SCHEMA_DEPTH {
        return Err(error(at, format!("nested deeper than {MAX_SCHEMA_DEPTH} levels")));
    }
    let Value::Object(keywords) = schema else { return Err(error(at, "a schema must be an object")) };
    let mut node = Node::default();
    for (keyword, value) in keywords {
        let len = at.len();
        push_token(at, keyword);
        keyword_into(&mut node, keyword, value, at, depth)?;
        at.truncate(len);
    }
    check_consistent(&node, keywords, at)?;
    Ok(node)
}

fn keyword_into(node: &mut Node, keyword: &str, value: &Value, at: &mut String, depth: usize) -> Result<(), SchemaError> {
    match keyword {
        "type" => node.types = Some(types(value, at)?),
        "enum" => node.allowed = Some(value.as_array().cloned().ok_or_else(|| error(at, "must be an array"))?),
        "const" => node.allowed = Some(vec![value.clone()]),
        "minimum" => node.minimum = Some(Bound { value: number(value, at)?, exclusive: false }),
        "maximum" => node.maximum = Some(Bound { value: number(value, at)?, exclusive: false }),
        "exclusiveMinimum" => node.minimum = Some(Bound { value: number(value, at)?, exclusive: true }),
        "exclusiveMaximum" => node.maximum = Some(Bound { value: number(value, at)?, exclusive: true }),
        "minLength" => node.min_length = Some(count(value, at)?),
        "maxLength" => node.max_length = Some(count(value, at)?),
        "minItems" => node.min_items = Some(count(value, at)?),
        "maxItems" => node.max_items = Some(count(value, at)?),
        "pattern" => {
            let source = value.as_str().ok_or_else(|| error(at, "must be a string"))?;
            node.pattern = Some(Pattern::compile(source).map_err(|reason| error(at, reason))?);
        }
        "format" => {
            let name = value.as_str().ok_or_else(|| error(at, "must be a string"))?;
            node.format = Some(Format::from_name(name).ok_or_else(|| {
                error(at, format!("unknown format {name:?} (known: {})", Format::NAMES.join(", ")))
            })?);
        }
        "required" => node.required = required(value, at)?,
        "properties" => {
            let Value::Object(properties) = value else { return Err(error(at, "must be an object")) };
            for (name, schema) in properties {
                let len = at.len();
                push_token(at, name);
                node.properties.insert(name.clone(), self::node(schema, at, depth + 1)?);
                at.truncate(len);
            }
        }
        "additionalProperties" => {
            node.additional = match value {
                Value::Bool(true) => Additional::Allowed,
                Value::Bool(false) => Additional::Refused,
                schema => Additional::Checked(Box::new(self::node(schema, at, depth + 1)?)),
            }
        }
        "items" => node.items = Some(Box::new(self::node(value, at, depth + 1)?)),
        annotation if ANNOTATIONS.contains(&annotation) => {}
        other => return Err(error(at, format!("keyword {other:?} is not supported"))),
    }
    Ok(())
}

/// Rules across keywords: bounds that no value can meet are a mistake in the schema.
fn check_consistent(node: &Node, keywords: &Map<String, Value>, at: &str) -> Result<(), SchemaError> {
    if keywords.contains_key("enum") && keywords.contains_key("const") {
        return Err(error(at, "has both enum and const"));
    }
    for (low, high) in [("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")] {
        if keywords.contains_key(low) && keywords.contains_key(high) {
            return Err(error(at, format!("has both {low} and {high}")));
        }
    }
    if let (Some(min), Some(max)) = (node.minimum, node.maximum) {
        if min.value > max.value {
            return Err(error(at, "minimum is above maximum"));
        }
    }
    for (min, max, what) in [(node.min_length, node.max_length, "minLength"), (node.min_items, node.max_items, "minItems")] {
        if let (Some(min), Some(max)) = (min, max) {
            if min > max {
                return Err(error(at, format!("{what} is above its maximum")));
            }
        }
    }
    if let Additional::Refused = node.additional {
        if let Some(name) = node.required.iter().find(|name| !node.properties.contains_key(*name)) {
            return Err(error(at, format!("requires {name:?}, which additionalProperties: false refuses")));
        }
    }
    Ok(())
}

fn types(value: &Value, at: &str) -> Result<Vec<JsonType>, SchemaError> {
    let names: Vec<&Value> = match value {
        Value::Array(names) if !names.is_empty() => names.iter().collect(),
        Value::String(_) => vec![value],
        _ => return Err(error(at, "must be a type name or a non-empty list of them")),
    };
    names
        .into_iter()
        .map(|name| match name.as_str() {
            Some("null") => Ok(JsonType::Null),
            Some("boolean") => Ok(JsonType::Boolean),
            Some("object") => Ok(JsonType::Object),
            Some("array") => Ok(JsonType::Array),
            Some("number") => Ok(JsonType::Number),
            Some("integer") => Ok(JsonType::Integer),
            Some("string") => Ok(JsonType::String),
            _ => Err(error(at, format!("unknown type {name}"))),
        })
        .collect()
}

fn required(value: &Value, at: &str) -> Result<Vec<String>, SchemaError> {
    let Value::Array(names) = value else { return Err(error(at, "must be an array of property names")) };
    let mut required = Vec::with_capacity(names.len());
    for name in names {
        let name = name.as_str().ok_or_else(|| error(at, "must be an array of property names"))?;
        if required.iter().any(|r| r == name) {
            return Err(error(at, format!("names {name:?} twice")));
        }
        required.push(name.to_owned());
    }
    Ok(required)
}

fn number(value: &Value, at: &str) -> Result<f64, SchemaError> {
    value.as_f64().filter(|n| n.is_finite()).ok_or_else(|| error(at, "must be a number"))
}

fn count(value: &Value, at: &str) -> Result<usize, SchemaError> {
    value.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| error(at, "must be a non-negative integer"))
}

fn error(at: &str, reason: impl Into<String>) -> SchemaError {
    SchemaError { at: if at.is_empty() { String::from("/") } else { at.to_owned() }, reason: reason.into() }
}
