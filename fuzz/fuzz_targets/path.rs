//! Path pattern parsing, matching and the readings of a request path never panic; a match
//! is always inside the pattern; a reading is a path no further reading changes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stagedoor_filter_core::path::{is_under_prefix, strip_query, PathPattern, PathReadings};

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
    if let Ok(readings) = PathReadings::read(path) {
        for reading in readings.each() {
            assert!(reading.starts_with('/'));
            let again = PathReadings::read(reading).expect("a reading reads again");
            assert_eq!(again.canonical(), readings.canonical(), "canonical is a fixed point");
        }
    }
});
