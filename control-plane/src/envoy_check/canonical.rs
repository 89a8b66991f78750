//! An order-insensitive form of protobuf bytes, for naming a bootstrap by its content.
//!
//! prost decodes every map field (`Struct.fields`, `Metadata.filter_metadata`,
//! `typed_extension_protocol_options`, ...) into a `HashMap` with a hasher of its own, so
//! the same decoded resource re-encodes with its map entries in a different order each
//! time, and in every process: hashing those bytes named one snapshot many ways (e2e stacks
//! validated the same bootstrap again and again). This form reads the bytes without a
//! schema: a length-delimited field whose bytes parse whole as fields is taken as a
//! message and put in this form too; then every message's fields are sorted. Sorting
//! repeated fields as well only makes the form blind to their order, which is right for
//! what it keys (whether Envoy accepts a config does not depend on list order).

/// The canonical form of `bytes` (a message), or the bytes themselves if they do not parse.
pub fn canonical(bytes: &[u8]) -> Vec<u8> {
    message(bytes, 0).unwrap_or_else(|| bytes.to_vec())
}

/// Nesting beyond this is left as bytes (no real config nests so deep).
const MAX_DEPTH: usize = 64;

fn message(bytes: &[u8], depth: usize) -> Option<Vec<u8>> {
    let mut fields: Vec<Vec<u8>> = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (key, after_key) = varint(rest)?;
        let header_len = rest.len() - after_key.len();
        let (field_len, value) = match key & 7 {
            0 => {
                let (_, after) = varint(after_key)?;
                (rest.len() - after.len(), None)
            }
            1 => (header_len + 8, None),
            5 => (header_len + 4, None),
            2 => {
                let (len, after_len) = varint(after_key)?;
                let len = usize::try_from(len).ok()?;
                let body = after_len.get(..len)?;
                (rest.len() - after_len.len() + len, Some(body))
            }
            _ => return None,
        };
        let field = rest.get(..field_len)?;
        let encoded = match value {
            Some(body) if depth < MAX_DEPTH && !body.is_empty() => match message(body, depth + 1) {
                Some(inner) => {
                    let mut out = rest[..header_len].to_vec();
                    push_varint(&mut out, inner.len() as u64);
                    out.extend_from_slice(&inner);
                    out
                }
                None => field.to_vec(),
            },
            _ => field.to_vec(),
        };
        fields.push(encoded);
        rest = &rest[field_len..];
    }
    fields.sort();
    Some(fields.concat())
}

fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::google::protobuf::{value, Struct, Value};
    use prost::Message;

    use super::canonical;

    fn string(s: &str) -> Value {
        Value { kind: Some(value::Kind::StringValue(s.to_owned())) }
    }

    #[test]
    fn a_map_encoded_in_any_order_has_one_form_and_other_content_another() {
        let entries: Vec<(String, Value)> = (0..8).map(|i| (format!("key{i}"), string(&format!("v{i}")))).collect();
        let forms: std::collections::BTreeSet<Vec<u8>> = (0..16)
            .map(|_| canonical(&Struct { fields: entries.iter().cloned().collect() }.encode_to_vec()))
            .collect();
        assert_eq!(forms.len(), 1, "one form whatever order the HashMap encoded");
        let mut changed = entries.clone();
        changed[3].1 = string("other");
        let other = canonical(&Struct { fields: changed.into_iter().collect() }.encode_to_vec());
        assert!(!forms.contains(&other), "other content, other form");
    }

    #[test]
    fn bytes_that_are_no_message_are_kept() {
        assert_eq!(canonical(&[0xff]), vec![0xff]);
        assert_eq!(canonical(b""), Vec::<u8>::new());
    }
}
