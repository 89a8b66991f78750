//! Schema compilation and validation never panic on any JSON; every violation's pointer
//! names a value in the document (a `required` one names the missing member, whose parent
//! is in the document).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stagedoor_filter_core::schema::Schema;

fuzz_target!(|input: (&[u8], &[u8])| {
    let (schema, document) = input;
    let (Ok(schema), Ok(document)) =
        (serde_json::from_slice::<serde_json::Value>(schema), serde_json::from_slice::<serde_json::Value>(document))
    else {
        return;
    };
    let Ok(schema) = Schema::compile(&schema) else { return };
    for violation in schema.validate(&document) {
        let pointer = if violation.rule == "required" {
            &violation.field[..violation.field.rfind('/').unwrap_or(0)]
        } else {
            violation.field.as_str()
        };
        assert!(document.pointer(pointer).is_some(), "{violation:?} points outside {document}");
    }
});
