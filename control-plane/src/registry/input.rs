//! Bounds on what a registry's text may be, and on what an error may echo of it: a registry
//! is read from a file, a gRPC request and the command line, and every error it yields is
//! logged or returned as one line.

/// The largest registry accepted, in bytes: room for 10,000 services (the benchmark's 10,000
/// with 5 instances each is 3.4 MB), and under gRPC's 4 MiB message limit, so a registry
/// that loads can also be applied.
pub const MAX_REGISTRY_BYTES: usize = 4_000_000;

/// The most of one message part (a value, a reason) an error shows: its head and its tail,
/// so a serde error keeps both what it read and where (`... at line 12 column 15`).
const ECHO_HEAD_CHARS: usize = 160;
const ECHO_TAIL_CHARS: usize = 80;

/// `text` if short, else its head and tail with how much was cut between them: an error
/// names the value at fault without copying megabytes into a log line.
pub fn bounded(text: &str) -> String {
    let chars = text.chars().count();
    if chars <= ECHO_HEAD_CHARS + ECHO_TAIL_CHARS {
        return text.to_owned();
    }
    let head_end = text.char_indices().nth(ECHO_HEAD_CHARS).map_or(text.len(), |(i, _)| i);
    let tail_start = text.char_indices().nth(chars - ECHO_TAIL_CHARS).map_or(text.len(), |(i, _)| i);
    format!("{}[... {} bytes cut ...]{}", &text[..head_end], tail_start - head_end, &text[tail_start..])
}

/// Rewrites a serde location such as `services[11].traffic: ...` to name the service, as
/// the registry's other errors do (`service "payment": traffic: ...`). Returns the message
/// as it was when the index or the name cannot be found in `text`.
pub fn name_the_service(message: &str, text: &str) -> String {
    let Some(rest) = message.strip_prefix("services[") else { return message.to_owned() };
    let Some((index, after)) = rest.split_once(']') else { return message.to_owned() };
    let Ok(index) = index.parse::<usize>() else { return message.to_owned() };
    let doc: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(doc) => doc,
        Err(_) => return message.to_owned(),
    };
    let Some(name) = doc.get("services").and_then(|s| s.get(index)).and_then(|s| s.get("name")).and_then(|n| n.as_str()) else {
        return message.to_owned();
    };
    let after = after.strip_prefix('.').or_else(|| after.strip_prefix(": ")).unwrap_or(after);
    format!("service \"{}\": {after}", bounded(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_echoed_whole_and_long_ones_cut_in_the_middle() {
        assert_eq!(bounded("abc"), "abc");
        let long = format!("start {} end", "é".repeat(1_000));
        let cut = bounded(&long);
        assert!(cut.starts_with("start éé") && cut.ends_with("éé end"), "{cut}");
        assert!(cut.contains("[... 1540 bytes cut ...]"), "{cut}");
        assert_eq!(cut.chars().count(), ECHO_HEAD_CHARS + ECHO_TAIL_CHARS + "[... 1540 bytes cut ...]".len());
        let exact = "x".repeat(ECHO_HEAD_CHARS + ECHO_TAIL_CHARS);
        assert_eq!(bounded(&exact), exact);
    }

    #[test]
    fn a_serde_location_names_the_service() {
        let text = "services:\n  - name: a\n  - name: payment\n";
        assert_eq!(name_the_service("services[1]: unknown field `x`", text), "service \"payment\": unknown field `x`");
        assert_eq!(name_the_service("services[1].traffic.timeout_ms: invalid type", text), "service \"payment\": traffic.timeout_ms: invalid type");
        assert_eq!(name_the_service("services[7]: unknown field `x`", text), "services[7]: unknown field `x`");
        assert_eq!(name_the_service("auth: missing field `issuer`", text), "auth: missing field `issuer`");
    }
}
