//! `pattern`: a regular expression searched for anywhere in the string (anchor it with
//! `^...$`), with ASCII classes (`\d` is `[0-9]`, `\w` is `[0-9A-Za-z_]`); `.` and negated
//! classes step over bytes, so a pattern that counts non-ASCII characters counts bytes.
//!
//! The regex crate is built without its Unicode tables, which keep most of its size out of
//! the wasm module; a pattern that needs them (`\p{L}`, a Unicode-aware `.`) is refused at
//! compile time rather than matched differently from ECMA-262.

/// Bounds on one compiled pattern (the filter compiles them in `on_configure`).
const COMPILED_SIZE_LIMIT: usize = 256 * 1024;
const NEST_LIMIT: u32 = 32;

#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: regex::bytes::Regex,
}

impl Pattern {
    pub fn compile(source: &str) -> Result<Self, String> {
        regex::bytes::RegexBuilder::new(source)
            .unicode(false)
            .size_limit(COMPILED_SIZE_LIMIT)
            .nest_limit(NEST_LIMIT)
            .build()
            .map(|regex| Self { source: source.to_owned(), regex })
            .map_err(|e| format!("pattern {source:?} is not supported: {e}"))
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.regex.is_match(s.as_bytes())
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}
