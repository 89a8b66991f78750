//! Path pattern parsing and matching never panic, and a match is always inside the pattern.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stagedoor_filter_core::path::{is_under_prefix, strip_query, PathPattern};

fuzz_target!(|input: (&str, &str)| {
    let (pattern, path) = input;
    let path = strip_query(path);
    if let Ok(p) = PathPattern::parse(pattern) {
        if p.matches(path) {
            match &p {
                PathPattern::Exact(e) => assert_eq!(e, path),
                PathPattern::Below(prefix) => assert!(path.starts_with(prefix.as_str()) && path.len() > prefix.len()),
            }
        }
    }
    if is_under_prefix(path, pattern) {
        assert!(path.starts_with(pattern));
    }
});
