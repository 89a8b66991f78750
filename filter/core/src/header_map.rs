//! Reading the header map Envoy hands a proxy-wasm filter, in place.
//!
//! The host serializes a map as: a little-endian u32 count `n`; `n` pairs of u32 lengths
//! (name, value); then each name and each value, every one followed by a NUL byte.
//! The SDK turns this into one `String` per name and value, and panics (killing the VM,
//! so every later request fails) when a value is not UTF-8, which HTTP/1 allows
//! (obs-text). Here every name and value borrows from the buffer, and bytes that are not
//! UTF-8 never stop the request: such a value reads as [`NOT_UTF8`], such a name as
//! [`NOT_UTF8`] too, which [`crate::decide`] refuses, as it refuses such a `:method` or
//! `:path` (Envoy's codecs never let one through, and what the policy cannot read it can
//! neither strip nor route).

/// What a name or value that is not UTF-8 reads as. No policy rule matches it: as an
/// `authorization` value it is a malformed token, as an `x-venue-id` a venue nobody holds,
/// as an `x-request-id` one that is replaced.
pub const NOT_UTF8: &str = "\u{FFFD}";

use crate::reply::Denial;

/// The buffer does not follow the format (a host bug, never a client's doing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

/// The reply when the host's map cannot be read: nothing unchecked goes on.
pub fn unreadable() -> Denial {
    Denial {
        status: 500,
        code: "HEADERS_UNREADABLE",
        message: String::from("The gateway could not read the request headers"),
    }
}

/// A map in the host's format, for the host calls that take one (a local reply's headers).
pub fn serialize_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs.iter().map(|(n, v)| 8 + n.len() + v.len() + 2).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&len(pairs.len()));
    for (name, value) in pairs {
        out.extend_from_slice(&len(name.len()));
        out.extend_from_slice(&len(value.len()));
    }
    for (name, value) in pairs {
        for piece in [name, value] {
            out.extend_from_slice(piece.as_bytes());
            out.push(0);
        }
    }
    out
}

/// Every (name, value) of a serialized map, in order, borrowing from `bytes`.
pub fn parse(bytes: &[u8]) -> Result<Vec<(&str, &str)>, Truncated> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let count = read_u32(bytes, 0)? as usize;
    // Each pair takes at least 8 bytes of lengths and 2 NULs: a count the buffer cannot
    // hold is refused before anything is allocated for it.
    if count > bytes.len() / 10 {
        return Err(Truncated);
    }
    let mut pairs = Vec::with_capacity(count);
    let start = 4 + count * 8;
    // Names and values lie back to back, each followed by a NUL: when the whole stretch is
    // UTF-8 (nearly always), every piece is, and one check covers them all.
    let text = bytes.get(start..).and_then(|rest| std::str::from_utf8(rest).ok());
    let mut data = start;
    for i in 0..count {
        let name_len = read_u32(bytes, 4 + i * 8)? as usize;
        let value_len = read_u32(bytes, 8 + i * 8)? as usize;
        let name = piece(bytes, text, start, data, name_len)?;
        data += name_len + 1;
        let value = piece(bytes, text, start, data, value_len)?;
        data += value_len + 1;
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// The `len` bytes at `at` as text: sliced from `text` (the UTF-8 stretch starting at
/// `start`) when there is one, else checked on their own.
fn piece<'a>(bytes: &'a [u8], text: Option<&'a str>, start: usize, at: usize, len: usize) -> Result<&'a str, Truncated> {
    let raw = field(bytes, at, len)?;
    Ok(match text {
        // `field` checked the NUL after the piece; a piece that starts after a NUL (or at
        // the stretch's start) and ends before one lies on character boundaries.
        Some(text) => text.get(at - start..at - start + len).ok_or(Truncated)?,
        None => as_text(raw),
    })
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, Truncated> {
    let word = bytes.get(at..at.checked_add(4).ok_or(Truncated)?).ok_or(Truncated)?;
    let mut le = [0u8; 4];
    le.copy_from_slice(word);
    Ok(u32::from_le_bytes(le))
}

/// `len` bytes at `at`, which must be followed by the NUL the format puts after each.
fn field(bytes: &[u8], at: usize, len: usize) -> Result<&[u8], Truncated> {
    let end = at.checked_add(len).ok_or(Truncated)?;
    match bytes.get(end) {
        Some(0) => bytes.get(at..end).ok_or(Truncated),
        _ => Err(Truncated),
    }
}

fn as_text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or(NOT_UTF8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The host's serialization, written independently of the parser.
    fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (name, value) in pairs {
            out.extend((name.len() as u32).to_le_bytes());
            out.extend((value.len() as u32).to_le_bytes());
        }
        for (name, value) in pairs {
            out.extend(*name);
            out.push(0);
            out.extend(*value);
            out.push(0);
        }
        out
    }

    #[test]
    fn reads_names_and_values_in_order_with_duplicates() {
        let bytes = serialize(&[(b":path", b"/a"), (b"x-a", b"1"), (b"x-a", b"2"), (b"empty", b"")]);
        assert_eq!(parse(&bytes), Ok(vec![(":path", "/a"), ("x-a", "1"), ("x-a", "2"), ("empty", "")]));
    }

    #[test]
    fn an_empty_buffer_is_an_empty_map() {
        assert_eq!(parse(&[]), Ok(vec![]));
        assert_eq!(parse(&serialize(&[])), Ok(vec![]));
    }

    #[test]
    fn bytes_that_are_not_utf8_read_as_the_marker_and_the_rest_still_reads() {
        let bytes = serialize(&[(b"x-custom-a", b"\xff\xfe"), (b"x-\xffname", b"v"), (b"authorization", b"Bearer t")]);
        assert_eq!(parse(&bytes), Ok(vec![("x-custom-a", NOT_UTF8), (NOT_UTF8, "v"), ("authorization", "Bearer t")]));
    }

    #[test]
    fn a_buffer_off_the_format_is_refused() {
        let good = serialize(&[(b"name", b"value")]);
        for cut in 1..good.len() {
            assert_eq!(parse(&good[..cut]), Err(Truncated), "cut at {cut}");
        }
        let mut no_nul = good.clone();
        let last = no_nul.len() - 1;
        no_nul[last] = b'x';
        assert_eq!(parse(&no_nul), Err(Truncated));
        assert_eq!(parse(&u32::MAX.to_le_bytes()), Err(Truncated));
        let mut huge_len = good;
        huge_len[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&huge_len), Err(Truncated));
    }

    proptest! {
        #[test]
        fn round_trips_any_map(pairs in proptest::collection::vec((any::<Vec<u8>>(), any::<Vec<u8>>()), 0..12)) {
            let borrowed: Vec<(&[u8], &[u8])> = pairs.iter().map(|(n, v)| (n.as_slice(), v.as_slice())).collect();
            let bytes = serialize(&borrowed);
            let parsed = parse(&bytes).unwrap();
            prop_assert_eq!(parsed.len(), pairs.len());
            for ((name, value), (raw_name, raw_value)) in parsed.iter().zip(&pairs) {
                prop_assert_eq!(*name, std::str::from_utf8(raw_name).unwrap_or(NOT_UTF8));
                prop_assert_eq!(*value, std::str::from_utf8(raw_value).unwrap_or(NOT_UTF8));
            }
        }

        #[test]
        fn never_panics_on_any_bytes(bytes in any::<Vec<u8>>()) {
            let _ = parse(&bytes);
        }

        #[test]
        fn what_is_serialized_parses_back(pairs in proptest::collection::vec(("[a-z:-]{0,12}", "\\PC{0,20}"), 0..8)) {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let bytes = serialize_map(&pairs);
            prop_assert_eq!(parse(&bytes), Ok(pairs.clone()));
        }
    }
}
