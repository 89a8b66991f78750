//! Reading the host's serialized header map never panics, and whatever it returns borrows
//! from the buffer it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stagedoor_filter_core::header_map::{parse, NOT_UTF8};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(pairs) = parse(bytes) {
        let range = bytes.as_ptr_range();
        for (name, value) in pairs {
            for text in [name, value] {
                assert!(text == NOT_UTF8 || text.is_empty() || range.contains(&text.as_ptr()));
            }
        }
    }
});
