use super::*;

fn document(version: u64) -> StoredRegistry {
    StoredRegistry { version, hash: format!("h{version}"), yaml: String::from("services: []\n"), applied_by: String::from("op"), applied_at_unix_ms: 1 }
}

#[test]
fn the_first_write_needs_base_zero_and_every_later_one_the_current_version() {
    assert_eq!(decide(0, None, 0, "a").unwrap(), Written::New(1));
    assert_eq!(decide(3, Some("a"), 3, "b").unwrap(), Written::New(4));
    match decide(4, Some("b"), 3, "c") {
        Err(StoreError::Stale { current: 4, base: 3 }) => {}
        other => panic!("a stale base must be refused: {other:?}"),
    }
    // A seed racing another replica's (both base 0) loses once the first is written.
    assert!(matches!(decide(1, Some("a"), 0, "a"), Err(StoreError::Stale { current: 1, base: 0 })));
}

#[test]
fn the_same_content_writes_nothing_but_a_stale_base_is_refused_first() {
    assert_eq!(decide(4, Some("b"), 4, "b").unwrap(), Written::Unchanged(4));
    assert!(matches!(decide(5, Some("b"), 4, "b"), Err(StoreError::Stale { .. })));
}

#[test]
fn the_stale_refusal_names_both_versions() {
    let message = StoreError::Stale { current: 7, base: 5 }.to_string();
    assert!(message.contains("at version 7") && message.contains("based on version 5"), "{message}");
}

#[test]
fn a_document_round_trips_and_an_unknown_field_is_refused() {
    let d = document(3);
    let text = serde_json::to_string(&d).unwrap();
    assert_eq!(store::parse(&text).unwrap(), d);
    let bad = text.replacen('{', "{\"extra\":1,", 1);
    let e = store::parse(&bad).unwrap_err().to_string();
    assert!(e.contains("version 3") && e.contains("extra"), "{e}");
}

#[test]
fn the_script_builds_the_same_document_serde_reads() {
    // cas.lua prefixes the version to the JSON the write sends: the result must parse.
    let unversioned = r#"{"hash":"h","yaml":"a: \"b\"\n","applied_by":"op","applied_at_unix_ms":17}"#;
    let built = format!("{{\"version\":{},{}", 9, &unversioned[1..]);
    let d = store::parse(&built).unwrap();
    assert_eq!((d.version, d.yaml.as_str(), d.applied_at_unix_ms), (9, "a: \"b\"\n", 17));
}

#[test]
fn kept_versions_read_oldest_to_newest() {
    assert_eq!(kept_range(&[document(7), document(6), document(5)]), "5..7");
    assert_eq!(kept_range(&[]), "none");
}
