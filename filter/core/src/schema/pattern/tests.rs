use proptest::prelude::*;

use super::Pattern;

fn matches(pattern: &str, s: &str) -> bool {
    Pattern::compile(pattern).unwrap().is_match(s)
}

#[test]
fn the_shipped_patterns() {
    let v4 = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$";
    assert!(matches(v4, "0f8fad5b-d9cb-469f-a165-70867728950e"));
    assert!(!matches(v4, "c232ab00-9414-11ec-b3c8-9f6bdeced846"), "version 1");
    assert!(!matches(v4, "0f8fad5b-d9cb-469f-a165-70867728950e0"));
    let phone = r"^\+?[1-9]\d{1,14}$";
    assert!(matches(phone, "+14155550100"));
    assert!(matches(phone, "14"));
    assert!(!matches(phone, "+0123"));
    assert!(!matches(phone, "+1234567890123456"));
}

#[test]
fn search_anchors_alternation_and_repetition() {
    assert!(matches("b+", "abbc"));
    assert!(!matches("^b+", "abbc"));
    assert!(matches("^(?:ab|cd)*$", "abcdab"));
    assert!(!matches("^(?:ab|cd)*$", "abc"));
    assert!(matches("^a{2,3}$", "aaa"));
    assert!(!matches("^a{2,3}$", "aaaa"));
    assert!(matches("^a{2,}$", "aaaaaaa"));
    assert!(matches("", "anything"));
    assert!(matches("^$", ""));
    assert!(matches("x|", "y"), "an empty branch matches");
    assert!(matches(r"^[\w.-]+$", "a_b.c-d"));
    assert!(!matches(r"^[^\s]+$", "a b"));
    assert!(matches(r"^\x41\.$", "A."));
    assert!(!matches("^.$", "\n"));
}

#[test]
fn what_is_not_supported_is_refused() {
    for pattern in ["(a", "a)", "[a", "[]", "*a", "a**", "a*?", "(?=a)", "(?<n>a)", r"\1", r"\p{L}", r"\b", "é", "a{2,1}", "a{1001}", "[z-a]", "^*", r"\"] {
        assert!(Pattern::compile(pattern).is_err(), "{pattern:?} compiled");
    }
    let nested = format!("{}a{}", "(".repeat(40), ")".repeat(40));
    assert!(Pattern::compile(&nested).unwrap_err().contains("nested"));
    assert!(Pattern::compile("(a{1000}){1000}").unwrap_err().contains("instructions"), "counted repetition is bounded");
}

#[test]
fn a_hostile_pattern_and_string_take_linear_time() {
    let pattern = Pattern::compile("^(a+)+$").unwrap();
    let s = format!("{}!", "a".repeat(20_000));
    let started = std::time::Instant::now();
    assert!(!pattern.is_match(&s));
    let took = started.elapsed();
    println!("(a+)+$ on 20,000 a's and a '!': {took:?}");
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
}

fn pattern_text() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        prop::sample::select(vec!["a", "b", "c", ".", r"\d", r"\w", r"\s", r"\.", "[ab]", "[^a]", "[a-c]", r"[\d_]", "-", "1"])
            .prop_map(str::to_owned),
    ];
    let quantifier = prop::sample::select(vec!["", "", "*", "+", "?", "{2}", "{1,3}", "{0,}", "{2,}", "{0,1}"]);
    atom.prop_recursive(3, 24, 4, move |inner| {
        let piece = (inner, quantifier.clone()).prop_map(|(atom, q)| format!("{atom}{q}"));
        let concat = proptest::collection::vec(piece, 0..4).prop_map(|pieces| pieces.concat());
        (proptest::collection::vec(concat, 1..3), any::<bool>())
            .prop_map(|(branches, capturing)| format!("({}{})", if capturing { "" } else { "?:" }, branches.join("|")))
    })
}

proptest! {
    /// The engine agrees with regex-automata (the `regex` crate, ASCII mode, on bytes) on
    /// generated patterns of the subset and short strings.
    #[test]
    fn agrees_with_the_regex_crate(
        body in proptest::collection::vec(pattern_text(), 1..4),
        // Mostly anchored: a whole-string match is where a wrong count or class shows.
        start in prop::bool::weighted(0.8),
        end in prop::bool::weighted(0.8),
        s in "[abc1_ .\n-]{0,8}",
    ) {
        let pattern = format!("{}{}{}", if start { "^" } else { "" }, body.concat(), if end { "$" } else { "" });
        let reference = regex::bytes::RegexBuilder::new(&pattern).unicode(false).build().unwrap();
        let ours = Pattern::compile(&pattern).unwrap();
        prop_assert_eq!(ours.is_match(&s), reference.is_match(s.as_bytes()), "{:?} on {:?}", pattern, s);
    }
}
