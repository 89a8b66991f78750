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
