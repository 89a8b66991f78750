//! A source's path template: literal text and `{param}`s taken from the composite route's
//! path, filled in per request.

/// A compiled template: literal runs and the names of the params between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Param(String),
}

/// Why a template was refused; the caller names the source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("must start with '/'")]
    NotAbsolute,
    #[error("has an unclosed or empty '{{'")]
    Unclosed,
    #[error("names {{{0}}}, which the route's path does not have")]
    UnknownParam(String),
    #[error("has a character that is not allowed in a request target: {0:?}")]
    BadChar(char),
}

/// A param value that cannot be put in a path as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path parameter {name} may hold only letters, digits, '-', '_', '~' and '.' (and is not '.' or '..')")]
pub struct UnsafeParam {
    pub name: String,
}

impl PathTemplate {
    /// `route_params` are the `{name}`s of the composite route's path.
    pub fn compile(template: &str, route_params: &[&str]) -> Result<Self, TemplateError> {
        if !template.starts_with('/') {
            return Err(TemplateError::NotAbsolute);
        }
        if let Some(c) = template.chars().find(|c| !c.is_ascii_graphic() || *c == '#') {
            return Err(TemplateError::BadChar(c));
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let (literal, after) = rest.split_at(open);
            let close = after.find('}').filter(|close| *close > 1).ok_or(TemplateError::Unclosed)?;
            let name = &after[1..close];
            if !route_params.contains(&name) {
                return Err(TemplateError::UnknownParam(name.to_owned()));
            }
            if !literal.is_empty() {
                parts.push(Part::Literal(literal.to_owned()));
            }
            parts.push(Part::Param(name.to_owned()));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(TemplateError::Unclosed);
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The path for one request. Every value must be plain ([`is_plain_param`]): a value is
    /// one segment of the route's path, and must stay one segment (and one query value) of
    /// the source's, whatever the source's framework decodes.
    pub fn render(&self, params: &[(&str, &str)]) -> Result<String, UnsafeParam> {
        let mut path = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(literal) => path.push_str(literal),
                Part::Param(name) => {
                    let value = params.iter().find(|(n, _)| n == name).map(|(_, v)| *v).unwrap_or_default();
                    if !is_plain_param(value) {
                        return Err(UnsafeParam { name: name.clone() });
                    }
                    path.push_str(value);
                }
            }
        }
        Ok(path)
    }
}

/// Letters, digits, `-`, `_`, `~` and dots, at most 256 bytes, never `.` or `..`: nothing a
/// backend could decode into another segment, a query or a traversal. Percent-escapes are
/// refused rather than decoded: an id has none.
pub fn is_plain_param(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && value != "."
        && value != ".."
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~' | b'.'))
}
