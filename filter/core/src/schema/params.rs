//! Query strings and path params are text; their schemas speak of numbers and booleans
//! (`page: integer, minimum 1`). Each value is read as the type its property's schema asks
//! for when it spells one, and left a string otherwise (so `page=abc` is reported as not an
//! integer rather than silently dropped).

use serde_json::{Map, Value};

use super::{JsonType, Node, Schema};

/// A query string that cannot be read as text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query string has a bad percent-escape")]
    BadEscape,
    #[error("the query string is not UTF-8 once decoded")]
    NotUtf8,
}

impl Schema {
    /// The object a schema for query or path params checks: each name once, its value typed
    /// by its property's schema; a name given more than once becomes an array (valid only
    /// where the schema allows an array).
    pub fn params_object<'a>(&self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
        let mut object = Map::new();
        for (name, text) in pairs {
            let property = self.root.properties.get(name).or(match &self.root.additional {
                super::Additional::Checked(schema) => Some(schema.as_ref()),
                _ => None,
            });
            let value = typed(property, text);
            match object.get_mut(name) {
                Some(Value::Array(values)) if is_array_schema(property) => values.push(value),
                Some(existing) => {
                    let first = existing.take();
                    *existing = Value::Array(vec![first, value]);
                }
                None => {
                    let value = if is_array_schema(property) { Value::Array(vec![value]) } else { value };
                    object.insert(name.to_owned(), value);
                }
            }
        }
        Value::Object(object)
    }
}

fn is_array_schema(property: Option<&Node>) -> bool {
    property.and_then(|p| p.types.as_ref()).is_some_and(|types| types.contains(&JsonType::Array))
}

fn typed(property: Option<&Node>, text: &str) -> Value {
    let Some(node) = property else { return Value::String(text.to_owned()) };
    let node = match (&node.types, &node.items) {
        (Some(types), Some(items)) if types.contains(&JsonType::Array) => items.as_ref(),
        _ => node,
    };
    let wants = |t: JsonType| node.types.as_ref().is_some_and(|types| types.contains(&t));
    if wants(JsonType::Integer) || wants(JsonType::Number) {
        if let Ok(number) = text.parse::<serde_json::Number>() {
            return Value::Number(number);
        }
    }
    if wants(JsonType::Boolean) {
        match text {
            "true" => return Value::Bool(true),
            "false" => return Value::Bool(false),
            _ => {}
        }
    }
    Value::String(text.to_owned())
}

/// `a=1&b=x%20y` -> [("a", "1"), ("b", "x y")] (`+` is a space, as forms send it); empty
/// pieces are skipped, a name without `=` has an empty value.
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, QueryError> {
    query
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

fn decode(text: &str) -> Result<String, QueryError> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(b) = input.next() {
        match b {
            b'+' => bytes.push(b' '),
            b'%' => {
                let high = input.next().and_then(hex).ok_or(QueryError::BadEscape)?;
                let low = input.next().and_then(hex).ok_or(QueryError::BadEscape)?;
                bytes.push(high << 4 | low);
            }
            b => bytes.push(b),
        }
    }
    String::from_utf8(bytes).map_err(|_| QueryError::NotUtf8)
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}
