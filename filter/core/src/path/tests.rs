use super::*;

#[test]
fn prefix_matches_whole_segments_only() {
    assert!(is_under_prefix("/api/v1/venues", "/api/v1/venues"));
    assert!(is_under_prefix("/api/v1/venues/1", "/api/v1/venues"));
    assert!(!is_under_prefix("/api/v1/venuesX", "/api/v1/venues"));
    assert!(!is_under_prefix("/api/v1/venue", "/api/v1/venues"));
    assert!(is_under_prefix("/anything", "/"));
}

#[test]
fn exact_public_path_is_exact() {
    let login = PathPattern::parse("/api/v1/auth/login").unwrap();
    assert!(login.matches("/api/v1/auth/login"));
    assert!(!login.matches("/api/v1/auth/login-admin"));
    assert!(!login.matches("/api/v1/auth/loginx"));
    assert!(!login.matches("/api/v1/auth/login/"));
    assert!(!login.matches("/api/v1/auth/login/x"));
    assert!(!login.matches("/API/v1/auth/login"));
}

#[test]
fn wildcard_covers_only_what_is_below() {
    let public = PathPattern::parse("/api/v1/public/*").unwrap();
    assert!(public.matches("/api/v1/public/a"));
    assert!(public.matches("/api/v1/public/a/b"));
    assert!(!public.matches("/api/v1/public"));
    assert!(!public.matches("/api/v1/public/"));
    assert!(!public.matches("/api/v1/publicity"));
}

#[test]
fn patterns_that_envoy_would_never_hand_us_are_refused() {
    assert_eq!(PathPattern::parse("api/x"), Err(PatternError::NotAbsolute));
    assert_eq!(PathPattern::parse("/a/*/b"), Err(PatternError::StrayWildcard));
    assert_eq!(PathPattern::parse("/a*"), Err(PatternError::StrayWildcard));
    for bad in ["/a/../b", "/a/./b", "/a//b", "/a%2fb", "/a;b", "/a\\b", "/a?b", "/a b"] {
        assert_eq!(PathPattern::parse(bad), Err(PatternError::NotNormalized), "{bad}");
    }
}

#[test]
fn query_never_takes_part() {
    assert_eq!(strip_query("/a/b?x=/c"), "/a/b");
    assert_eq!(strip_query("/a#frag"), "/a");
    assert_eq!(strip_query("/a"), "/a");
}

mod properties {
    use super::super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parse_and_match_never_panic(pattern in "\\PC{0,40}", path in "\\PC{0,60}") {
            if let Ok(p) = PathPattern::parse(&pattern) {
                let _ = p.matches(&path);
            }
            let _ = is_under_prefix(&path, &pattern);
            let _ = strip_query(&path);
        }

        #[test]
        fn a_below_pattern_never_matches_outside_its_prefix(seg in "[a-z]{1,8}", path in "/[a-z/]{0,30}") {
            let p = PathPattern::parse(&format!("/{seg}/*")).unwrap();
            if p.matches(&path) {
                let prefix = format!("/{seg}/");
                prop_assert!(path.starts_with(&prefix) && path.len() > prefix.len());
            }
        }
    }
}

mod readings {
    use super::super::*;

    fn read(path: &str) -> Result<(String, String), PathRefusal> {
        PathReadings::read(path).map(|r| (r.as_sent().to_owned(), r.canonical().to_owned()))
    }

    fn both(path: &str) -> (String, String) {
        (path.to_owned(), path.to_owned())
    }

    #[test]
    fn trailing_slashes_go_from_both_readings() {
        assert_eq!(read("/api/v1/events/"), Ok(both("/api/v1/events")));
        assert_eq!(read("/api/v1/events//"), Ok(both("/api/v1/events")));
        assert_eq!(read("/"), Ok(both("/")));
        assert_eq!(read("//"), Ok(both("/")));
    }

    #[test]
    fn params_and_escapes_go_from_the_canonical_reading() {
        assert_eq!(read("/a/reports;x=1"), Ok(("/a/reports;x=1".into(), "/a/reports".into())));
        assert_eq!(read("/a;v=2/b;c/"), Ok(("/a;v=2/b;c".into(), "/a/b".into())));
        assert_eq!(read("/a/%72eports"), Ok(both("/a/reports")), "an unreserved escape is the character");
        assert_eq!(read("/a/%7e%2D%5F"), Ok(both("/a/~-_")));
        assert_eq!(read("/a/x%20y"), Ok(("/a/x%20y".into(), "/a/x y".into())));
        assert_eq!(read("/a/caf%C3%A9"), Ok(("/a/caf%C3%A9".into(), "/a/café".into())));
        let plain = PathReadings::read("/a/b").unwrap();
        assert_eq!(plain.each().count(), 1, "a plain path is read once");
    }

    #[test]
    fn ambiguous_forms_are_refused() {
        for (path, why) in [
            ("/a/../b", PathRefusal::DotSegment),
            ("/a/./b", PathRefusal::DotSegment),
            ("/a/..;/b", PathRefusal::DotSegment),
            ("/a/%2e%2e/b", PathRefusal::DotSegment),
            ("/a/.%2E", PathRefusal::DotSegment),
            ("/a//b", PathRefusal::EmptySegment),
            ("/a/;x/b", PathRefusal::EmptySegment),
            ("/a/;x", PathRefusal::EmptySegment),
            ("/a\\b", PathRefusal::Backslash),
            ("/a/events\\", PathRefusal::Backslash),
            ("/a/b%2Fc", PathRefusal::EncodedDelimiter),
            ("/a/b%5cc", PathRefusal::EncodedDelimiter),
            ("/a/reports%3F", PathRefusal::EncodedDelimiter),
            ("/a/reports%23", PathRefusal::EncodedDelimiter),
            ("/a/reports%3b", PathRefusal::EncodedDelimiter),
            ("/a/%2565", PathRefusal::EncodedDelimiter),
            ("/a/b%00", PathRefusal::EncodedDelimiter),
            ("/a/b%zz", PathRefusal::BadEscape),
            ("/a/b%4", PathRefusal::BadEscape),
            ("/a/reports%20", PathRefusal::Whitespace),
            ("/a/%09reports", PathRefusal::EncodedDelimiter),
            ("/a/reports ", PathRefusal::Whitespace),
            ("/a/re\u{85}ports", PathRefusal::Whitespace),
            ("/a/%C2%85", PathRefusal::Whitespace),
            ("/a/%FF", PathRefusal::NotUtf8),
            ("a/b", PathRefusal::NotAbsolute),
            ("", PathRefusal::NotAbsolute),
        ] {
            assert_eq!(read(path), Err(why), "{path:?}");
        }
    }

    #[test]
    fn literal_segments_ignore_case_and_the_letters_that_fold_to_ascii() {
        assert!(segment_eq("reports", "REPORTS"));
        assert!(segment_eq("reports", "rePorts"));
        assert!(segment_eq("reports", "report\u{17f}"), "long s");
        assert!(segment_eq("kiosk", "\u{212a}\u{131}osk"), "Kelvin sign and dotless i");
        assert!(segment_eq("item", "\u{130}tem"), "capital I with dot");
        assert!(!segment_eq("reports", "report"));
        assert!(!segment_eq("reports", "reportss"));
        assert!(!segment_eq("reports", "r\u{e9}ports"));
    }

    mod properties {
        use super::super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn readings_never_panic_and_the_canonical_reading_is_a_fixed_point(path in "/[a-zA-Z0-9;%./\\\\ =_-]{0,40}") {
                if let Ok(readings) = PathReadings::read(&path) {
                    for reading in readings.each() {
                        let again = PathReadings::read(reading).expect("a reading reads again");
                        prop_assert_eq!(again.canonical(), readings.canonical());
                        prop_assert!(!reading.contains("//") && (reading == "/" || !reading.ends_with('/')));
                    }
                }
            }

            #[test]
            fn the_one_pass_checks_agree_with_the_plain_ones(path in "/[a-z./; %\\\\\u{85}\u{a0}\u{2028}-]{0,24}") {
                let ours = PathReadings::read(&path).err();
                let reference = crate::path::readings::reference_refusal(&path);
                // Both refuse the same paths; the reason may differ where a path has two faults.
                prop_assert_eq!(ours.is_some(), reference.is_some(), "{:?}: {:?} vs {:?}", path, ours, reference);
            }

            #[test]
            fn segment_eq_agrees_with_folding_the_whole_segment(a in "[a-z]{0,6}", b in "[a-zA-Z\u{17f}\u{212a}\u{131}\u{130}\u{e9}]{0,6}") {
                let folded: String = b.chars().map(|c| match c {
                    '\u{17f}' => 's',
                    '\u{212a}' => 'k',
                    '\u{131}' | '\u{130}' => 'i',
                    c => c.to_ascii_lowercase(),
                }).collect();
                prop_assert_eq!(segment_eq(&a, &b), folded == a);
            }

            #[test]
            fn segment_eq_agrees_with_lowercase_compare_on_ascii(a in "[a-zA-Z0-9-]{0,8}", b in "[a-zA-Z0-9-]{0,8}") {
                prop_assert_eq!(segment_eq(&a.to_ascii_lowercase(), &b), a.eq_ignore_ascii_case(&b));
            }
        }
    }
}
