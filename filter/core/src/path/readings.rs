//! How a backend may read a request path, so that a rule matches every form of it.
//!
//! Backends disagree on what names the same resource: Fastify and Express serve `/events/`
//! as `/events`, Express routes case-insensitively by default, Spring and Fastify v4 drop
//! `;params`, and most decode percent escapes before routing. A rule written once must hold
//! for every such form. So the policy reads a path two ways, and a request passes only if
//! both readings pass:
//!
//! - **as sent**: the path without its trailing slashes, and with escapes of unreserved
//!   characters decoded (RFC 3986 6.2.2.2: `%6Cogin` is `login` to every reader);
//! - **canonical**: each segment without its `;params` and with percent escapes decoded.
//!
//! Literal segments compare without regard to ASCII case (see [`segment_eq`]) in both.
//! Forms whose reading is ambiguous are refused outright ([`PathRefusal`]): dot segments
//! (`..;`, `%2e%2e`), an empty segment inside the path, escapes that decode to a separator,
//! a delimiter, a control character or another escape, whitespace a backend may trim, and
//! backslashes. Envoy's own normalization (`normalize_path`, `merge_slashes`, escaped
//! slashes rejected) already removes most of these; this is the last line, and what a
//! direct call to the filter's policy sees.

use std::borrow::Cow;

/// Why a path is refused before any rule is consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("the path has a '.' or '..' segment")]
    DotSegment,
    #[error("the path has an empty segment")]
    EmptySegment,
    #[error("the path has a backslash")]
    Backslash,
    #[error("the path has a malformed percent escape")]
    BadEscape,
    #[error("a percent escape in the path decodes to a separator, a delimiter, a control character or another escape")]
    EncodedDelimiter,
    #[error("a path segment starts or ends with whitespace, or has a control character")]
    Whitespace,
    #[error("a percent escape in the path decodes to bytes that are not UTF-8")]
    NotUtf8,
}

/// The two readings of one request path (query already stripped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathReadings<'a> {
    /// The path as sent, trailing slashes trimmed, unreserved escapes decoded.
    as_sent: Cow<'a, str>,
    /// Parameters stripped and escapes decoded; `None` when that is `as_sent` itself (a
    /// path with no `;` and no `%`, nearly every request, costs no allocation).
    canonical: Option<String>,
}

impl<'a> PathReadings<'a> {
    pub fn read(path: &'a str) -> Result<Self, PathRefusal> {
        if !path.starts_with('/') {
            return Err(PathRefusal::NotAbsolute);
        }
        let as_sent = trim_trailing_slashes(path);
        // One pass over the bytes for the common path; segments are checked one by one
        // (as chars) only when a byte says a check could fail.
        let mut needs_canonical = false;
        let mut check_segments = false;
        let mut previous = b'/';
        for &b in &as_sent.as_bytes()[1..] {
            match b {
                b'\\' => return Err(PathRefusal::Backslash),
                b';' | b'%' => needs_canonical = true,
                b if b < 0x20 || b == 0x7f => return Err(PathRefusal::Whitespace),
                // Empty, dot or space-edged segments, and non-ASCII (whitespace or controls).
                b'/' | b'.' | b' ' if previous == b'/' => check_segments = true,
                b'/' if previous == b' ' => check_segments = true,
                b if b >= 0x80 => check_segments = true,
                _ => {}
            }
            previous = b;
        }
        if check_segments || previous == b' ' {
            for segment in as_sent[1..].split('/') {
                check_segment(segment, as_sent.len() > 1)?;
            }
        }
        if !needs_canonical {
            return Ok(Self { as_sent: Cow::Borrowed(as_sent), canonical: None });
        }
        let canonical = canonical(as_sent)?;
        let as_sent = decode_unreserved(as_sent);
        Ok(Self { as_sent, canonical: Some(canonical) })
    }

    /// The path as sent (trailing slashes trimmed, unreserved escapes decoded).
    pub fn as_sent(&self) -> &str {
        &self.as_sent
    }

    /// The canonical reading (the path with parameters stripped and escapes decoded).
    pub fn canonical(&self) -> &str {
        self.canonical.as_deref().unwrap_or(&self.as_sent)
    }

    /// Every distinct reading: one for a plain path, two otherwise.
    pub fn each(&self) -> impl Iterator<Item = &str> {
        let as_sent: &str = &self.as_sent;
        std::iter::once(as_sent).chain(self.canonical.as_deref().filter(move |c| *c != as_sent))
    }
}

/// The checks [`PathReadings::read`] makes in one pass, made the plain way: what the
/// one-pass version must agree with (a property test checks it).
#[cfg(test)]
pub(super) fn reference_refusal(path: &str) -> Option<PathRefusal> {
    if !path.starts_with('/') {
        return Some(PathRefusal::NotAbsolute);
    }
    let as_sent = trim_trailing_slashes(path);
    for &b in as_sent.as_bytes() {
        match b {
            b'\\' => return Some(PathRefusal::Backslash),
            b if b < 0x20 || b == 0x7f => return Some(PathRefusal::Whitespace),
            _ => {}
        }
    }
    for segment in as_sent[1..].split('/') {
        if let Err(e) = check_segment(segment, as_sent.len() > 1) {
            return Some(e);
        }
    }
    if as_sent.contains([';', '%']) { canonical(as_sent).err() } else { None }
}

/// `/a/b//` -> `/a/b`; `/` and `//` -> `/`.
fn trim_trailing_slashes(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() { &path[..1] } else { trimmed }
}

/// A segment of a reading: not empty (unless the whole path is `/`), not a dot segment,
/// no whitespace at either end a backend might trim, no control character.
fn check_segment(segment: &str, non_root: bool) -> Result<(), PathRefusal> {
    match segment {
        "" if non_root => Err(PathRefusal::EmptySegment),
        "." | ".." => Err(PathRefusal::DotSegment),
        s if s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) => Err(PathRefusal::Whitespace),
        s if !s.is_ascii() && s.chars().any(char::is_control) => Err(PathRefusal::Whitespace),
        _ => Ok(()),
    }
}

fn canonical(as_sent: &str) -> Result<String, PathRefusal> {
    let mut out = Vec::with_capacity(as_sent.len());
    for segment in as_sent[1..].split('/') {
        out.push(b'/');
        let without_params = segment.split(';').next().unwrap_or("");
        let start = out.len();
        decode_into(without_params, &mut out)?;
        // `/a/;x` and `/a/;x/b` leave an empty segment here: refused, not guessed at.
        check_segment(std::str::from_utf8(&out[start..]).map_err(|_| PathRefusal::NotUtf8)?, true)?;
    }
    String::from_utf8(out).map_err(|_| PathRefusal::NotUtf8)
}

/// Percent-decodes one segment. A decoded byte that would change how the path splits or
/// reads (`/`, `\`, `?`, `#`, `;`, `%`, a control character) is refused, not decoded.
fn decode_into(segment: &str, out: &mut Vec<u8>) -> Result<(), PathRefusal> {
    let bytes = segment.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let hex = |at: usize| bytes.get(at).and_then(|h| char::from(*h).to_digit(16));
        let (Some(high), Some(low)) = (hex(i + 1), hex(i + 2)) else { return Err(PathRefusal::BadEscape) };
        let decoded = (high * 16 + low) as u8;
        if matches!(decoded, b'/' | b'\\' | b'?' | b'#' | b';' | b'%') || decoded < 0x20 || decoded == 0x7f {
            return Err(PathRefusal::EncodedDelimiter);
        }
        out.push(decoded);
        i += 3;
    }
    Ok(())
}

/// `%41` -> `A` for the unreserved characters (letters, digits, `-._~`), every other
/// escape as it came. Only called on a path whose escapes [`canonical`] accepted.
fn decode_unreserved(path: &str) -> Cow<'_, str> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let decoded = (b == b'%')
            .then(|| std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(|d| d.is_ascii_alphanumeric() || matches!(d, b'-' | b'.' | b'_' | b'~'));
        match decoded {
            Some(d) => {
                out.push(char::from(d));
                i += 3;
            }
            None => {
                // Copy up to the next escape as it is (the path is UTF-8, and '%' is ASCII).
                let next = bytes[i + 1..].iter().position(|&c| c == b'%').map_or(bytes.len(), |p| i + 1 + p);
                out.push_str(&path[i..next]);
                i = next;
            }
        }
    }
    if out.len() == path.len() { Cow::Borrowed(path) } else { Cow::Owned(out) }
}

/// Does a request's path segment name the config's literal segment? ASCII case is
/// ignored, and so are the four non-ASCII letters whose case mapping is ASCII (`ſ` `K`
/// `ı` `İ`), which Java's `equalsIgnoreCase` and Unicode-aware matchers fold to `s` `k`
/// `i` `i`. `literal` is ASCII (config paths are checked to be).
pub fn segment_eq(literal: &str, segment: &str) -> bool {
    // Each of the four letters is longer in UTF-8 than the ASCII letter it folds to, so a
    // segment of the literal's length matches only ASCII-wise, and a shorter one never.
    if segment.len() <= literal.len() {
        return literal.len() == segment.len() && literal.eq_ignore_ascii_case(segment);
    }
    if segment.is_ascii() {
        return false;
    }
    let mut folded = segment.chars().map(|c| match c {
        '\u{17f}' => 's',
        '\u{212a}' => 'k',
        '\u{131}' | '\u{130}' => 'i',
        c => c.to_ascii_lowercase(),
    });
    literal.chars().all(|l| folded.next() == Some(l.to_ascii_lowercase())) && folded.next().is_none()
}
