//! A JSON Schema subset (draft 2020-12 keywords the original gateway's Joi schemas need),
//! compiled once and checked per request without I/O.
//!
//! Keywords: `type` (one name or a list), `enum`, `const`, `minimum`, `maximum`,
//! `exclusiveMinimum`, `exclusiveMaximum`, `minLength`, `maxLength` (in code points),
//! `pattern` (ASCII regular expressions, see [`pattern`]), `format` (`uuid`, `email`,
//! `date-time`, `e164`), `properties`, `required`, `additionalProperties` (a boolean or a
//! schema), `items`, `minItems`, `maxItems`. Annotations (`$schema`, `$id`, `$comment`,
//! `title`, `description`, `default`, `examples`) are accepted and ignored. Any other
//! keyword is refused when the schema is compiled, so a misspelt `minLenght` cannot let
//! everything through unnoticed.

mod compile;
mod format;
pub mod params;
mod pattern;
mod validate;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::Serialize;

pub use compile::MAX_SCHEMA_DEPTH;
pub use format::Format;
pub use pattern::Pattern;

/// A compiled schema: only [`Schema::compile`] makes one.
#[derive(Debug, Clone)]
pub struct Schema {
    root: Node,
}

/// One schema object, its keywords checked and parsed.
#[derive(Debug, Clone, Default)]
struct Node {
    /// None: any type. A type mismatch is the one violation reported for the value.
    types: Option<Vec<JsonType>>,
    allowed: Option<Vec<serde_json::Value>>,
    minimum: Option<Bound>,
    maximum: Option<Bound>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    pattern: Option<Pattern>,
    format: Option<Format>,
    properties: BTreeMap<String, Node>,
    required: Vec<String>,
    additional: Additional,
    items: Option<Box<Node>>,
    min_items: Option<usize>,
    max_items: Option<usize>,
}

/// A numeric bound and whether the bound itself is allowed.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bound {
    value: f64,
    exclusive: bool,
}

#[derive(Debug, Clone, Default)]
enum Additional {
    #[default]
    Allowed,
    Refused,
    Checked(Box<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonType {
    Null,
    Boolean,
    Object,
    Array,
    Number,
    Integer,
    String,
}

/// One way a document breaks its schema: where (a JSON pointer into the document), which
/// keyword, and a sentence for the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub field: String,
    pub rule: &'static str,
    pub message: String,
}

/// Why a schema was refused: the path of the keyword at fault inside the schema (a JSON
/// pointer, e.g. `/properties/name/minLength`) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schema {at}: {reason}")]
pub struct SchemaError {
    pub at: String,
    pub reason: String,
}

impl Schema {
    pub fn compile(schema: &serde_json::Value) -> Result<Self, SchemaError> {
        Ok(Self { root: compile::node(schema, &mut String::new(), 0)? })
    }

    /// Every violation in `document`, in document order; empty when it is valid.
    pub fn validate(&self, document: &serde_json::Value) -> Vec<Violation> {
        let mut violations = Vec::new();
        validate::node(&self.root, document, &mut String::new(), &mut violations);
        violations
    }
}

/// Appends one reference token to a JSON pointer (RFC 6901: `~` -> `~0`, `/` -> `~1`).
fn push_token(pointer: &mut String, token: &str) {
    pointer.push('/');
    for c in token.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}
