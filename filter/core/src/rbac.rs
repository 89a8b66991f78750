//! Role-based access: route rules that name a required permission, permission matching with
//! wildcards and `-own`, and venue scope.

use std::collections::BTreeMap;

use crate::config::{RoleConfig, RuleConfig};
use crate::path::{is_normalized, segment_eq};

/// A compiled route rule.
#[derive(Debug, Clone)]
pub struct Rule {
    method: Option<String>,
    segments: Vec<Segment>,
    pub permission: String,
    /// Decided in shadow only (see [`crate::shadow`]).
    pub shadow: bool,
    /// `<service>.<rule name>`, set by the policy compiler; names the rule in shadow
    /// metrics and logs.
    pub label: std::rc::Rc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Lower-cased; compared with [`segment_eq`], so case variants of a path still match.
    Literal(String),
    Param(String),
}

/// Path params captured by a rule, e.g. `venueId -> "v1"`.
pub type Params<'a> = Vec<(&'a str, &'a str)>;

/// Why a rule (or a roles table) was refused; the caller names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("method {0:?} must be an upper-case HTTP method or '*'")]
    Method(String),
    #[error("path {0:?} must start with '/'")]
    NotAbsolute(String),
    #[error("path {path:?}: bad parameter segment {segment:?}")]
    BadParam { path: String, segment: String },
    #[error("path {path:?}: bad segment {segment:?}")]
    BadSegment { path: String, segment: String },
    #[error("path {0:?} is not a normalized path")]
    NotNormalized(String),
    #[error("permission {0:?} must be resource:action")]
    Permission(String),
    #[error("name {0:?} must be 1 to 40 of [a-z0-9_-]")]
    Name(String),
    #[error("role {0:?}: name must be lower-case letters and '-'")]
    RoleName(String),
    #[error("role {role:?}: permission {permission:?} must be resource:action")]
    RolePermission { role: String, permission: String },
}

impl Rule {
    pub fn compile(config: &RuleConfig) -> Result<Self, RuleError> {
        let RuleConfig { method, path, permission, name, shadow } = config;
        if let Some(name) = name.as_deref().filter(|n| !is_rule_name(n)) {
            return Err(RuleError::Name(name.to_owned()));
        }
        let method = match method.as_str() {
            "*" => None,
            m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => Some(m.to_owned()),
            m => return Err(RuleError::Method(m.to_owned())),
        };
        let Some(body) = path.strip_prefix('/') else { return Err(RuleError::NotAbsolute(path.clone())) };
        let segments = body
            .split('/')
            .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                    Ok(Segment::Param(name.to_owned()))
                }
                Some(_) => Err(RuleError::BadParam { path: path.clone(), segment: s.to_owned() }),
                None if s.contains(['{', '}', '*']) => Err(RuleError::BadSegment { path: path.clone(), segment: s.to_owned() }),
                None => Ok(Segment::Literal(s.to_ascii_lowercase())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !is_normalized(&path.replace(['{', '}'], "")) || path.len() > 1 && path.ends_with('/') {
            return Err(RuleError::NotNormalized(path.clone()));
        }
        if !is_permission(permission) {
            return Err(RuleError::Permission(permission.clone()));
        }
        let label = name.as_deref().unwrap_or_default().into();
        Ok(Self { method, segments, permission: permission.clone(), shadow: *shadow, label })
    }

    /// Does the rule cover this method? A GET rule covers HEAD too: every common backend
    /// framework answers HEAD with the GET handler.
    fn covers_method(&self, method: &str) -> bool {
        match self.method.as_deref() {
            None => true,
            Some(m) => m == method || (m == "GET" && method == "HEAD"),
        }
    }

    /// Matches one reading of a path (see [`crate::path::PathReadings`]); returns the
    /// captured params.
    pub fn matches<'r, 'p>(&'r self, method: &str, path: &'p str) -> Option<Params<'p>>
    where
        'r: 'p,
    {
        if !self.covers_method(method) {
            return None;
        }
        // Every rule is tried on every request of its service: settle most of them on the
        // segment count before splitting anything, and allocate only for a match.
        let rest = path.strip_prefix('/')?;
        if rest.bytes().filter(|&b| b == b'/').count() + 1 != self.segments.len() {
            return None;
        }
        let parts = || rest.split('/').zip(&self.segments);
        let fits = parts().all(|(part, segment)| match segment {
            Segment::Literal(lit) => segment_eq(lit, part),
            Segment::Param(_) => !part.is_empty(),
        });
        if !fits {
            return None;
        }
        Some(
            parts()
                .filter_map(|(part, segment)| match segment {
                    Segment::Param(name) => Some((name.as_str(), part)),
                    Segment::Literal(_) => None,
                })
                .collect(),
        )
    }
}

/// A request method the policy can judge: an upper-case token, as HTTP/1.1 requires of
/// every standard and registered method. Envoy's HTTP/1 codec refuses the rest; over HTTP/2
/// it forwards `post` as it came, which a lenient backend may serve as POST while no POST
/// rule saw it.
pub fn is_method_token(method: &str) -> bool {
    (1..=32).contains(&method.len()) && method.bytes().all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
}

fn is_permission(p: &str) -> bool {
    p == "*"
        || p.split_once(':').is_some_and(|(resource, action)| {
            let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*');
            ok(resource) && ok(action)
        })
}

/// A rule's name, as it appears in metric names.
pub fn is_rule_name(name: &str) -> bool {
    (1..=40).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Checks role and permission names in a roles table.
pub fn compile_roles(roles: &BTreeMap<String, RoleConfig>) -> Result<BTreeMap<String, RoleConfig>, RuleError> {
    for (name, role) in roles {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
            return Err(RuleError::RoleName(name.clone()));
        }
        let shadow = role.shadow_permissions.iter().flatten();
        if let Some(bad) = role.permissions.iter().chain(shadow).find(|p| !is_permission(p)) {
            return Err(RuleError::RolePermission { role: name.clone(), permission: bad.clone() });
        }
    }
    Ok(roles.clone())
}

/// Does a holder of `granted` have `required`? `*` grants all, `resource:*` all of a
/// resource; `X-own` grants `X` when the path's `userId` is the caller; holding `X` grants
/// `X-own` (acting on anything includes acting on one's own).
pub fn has_permission(granted: &[String], required: &str, params: &Params<'_>, subject: &str) -> bool {
    let (resource, action) = required.split_once(':').unwrap_or((required, ""));
    let owner_is_caller = params.iter().any(|(name, value)| *name == "userId" && *value == subject);
    granted.iter().any(|g| {
        g == "*"
            || g == required
            || g.strip_suffix(":*") == Some(resource)
            || (owner_is_caller && g.strip_suffix("-own") == Some(required))
            || action.strip_suffix("-own").is_some_and(|base| g.split_once(':') == Some((resource, base)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(method: &str, path: &str, permission: &str) -> Rule {
        Rule::compile(&RuleConfig { permission: permission.into(), ..RuleConfig::route(method, path) }).unwrap()
    }

    fn perms(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn rules_match_method_and_whole_path_with_params() {
        let r = rule("POST", "/api/v1/venues/{venueId}/events", "events:create");
        assert_eq!(r.matches("POST", "/api/v1/venues/v1/events"), Some(vec![("venueId", "v1")]));
        assert_eq!(r.matches("GET", "/api/v1/venues/v1/events"), None);
        assert_eq!(r.matches("POST", "/api/v1/venues/v1/events/x"), None);
        assert_eq!(r.matches("POST", "/api/v1/venues//events"), None);
        assert_eq!(r.matches("POST", "/api/v1/venues/v1"), None);
        let any = rule("*", "/api/v1/events", "events:create");
        assert!(any.matches("DELETE", "/api/v1/events").is_some());
    }

    #[test]
    fn rules_cover_head_for_get_and_case_variants_of_literals() {
        let r = rule("GET", "/api/v1/venues/{venueId}/reports", "reports:view");
        assert_eq!(r.matches("HEAD", "/api/v1/venues/v2/reports"), Some(vec![("venueId", "v2")]));
        assert_eq!(r.matches("GET", "/api/v1/venues/V2/REPORTS"), Some(vec![("venueId", "V2")]), "param keeps its case");
        assert_eq!(r.matches("GET", "/api/v1/venues/v2/reporTs"), Some(vec![("venueId", "v2")]));
        assert_eq!(r.matches("GET", "/api/v1/venues/v2/report\u{17f}"), Some(vec![("venueId", "v2")]), "long s folds to s");
        assert_eq!(r.matches("POST", "/api/v1/venues/v2/reports"), None);
        let head = rule("POST", "/api/v1/events", "events:create");
        assert_eq!(head.matches("HEAD", "/api/v1/events"), None, "only GET rules cover HEAD");
    }

    #[test]
    fn methods_must_be_upper_case_tokens() {
        for ok in ["GET", "POST", "M-SEARCH", "VERSION-CONTROL"] {
            assert!(is_method_token(ok), "{ok}");
        }
        for bad in ["", "post", "Get", "GET ", "GE\tT", "P0ST", "POST\u{0}", &"A".repeat(33)] {
            assert!(!is_method_token(bad), "{bad:?}");
        }
    }

    /// The rule as a plain segment walk: what the pre-checked match must agree with.
    fn reference_matches<'p>(rule: &'p Rule, method: &str, path: &'p str) -> Option<Params<'p>> {
        if !rule.covers_method(method) {
            return None;
        }
        let parts: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        if parts.len() != rule.segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (part, segment) in parts.iter().zip(&rule.segments) {
            match segment {
                Segment::Literal(lit) if lit.eq_ignore_ascii_case(part) => {}
                Segment::Param(name) if !part.is_empty() => params.push((name.as_str(), *part)),
                _ => return None,
            }
        }
        Some(params)
    }

    proptest::proptest! {
        #[test]
        fn matching_agrees_with_a_plain_segment_walk(
            pattern in proptest::sample::select(vec![
                "/api/v1/venues/{venueId}/events", "/api/v1/venues/{venueId}", "/api/v1/users/{userId}/tickets/{ticketId}",
                "/api/v1/events", "/a",
            ]),
            method in proptest::sample::select(vec!["GET", "POST", "*"]),
            segments in proptest::collection::vec(proptest::sample::select(vec![
                "api", "v1", "venues", "events", "users", "tickets", "v9", "", "a", "EVENTS", "Venues", "A",
            ]), 0..7),
            request_method in proptest::sample::select(vec!["GET", "POST", "HEAD"]),
        ) {
            let r = rule(method, pattern, "a:b");
            let path = format!("/{}", segments.join("/"));
            proptest::prop_assert_eq!(r.matches(request_method, &path), reference_matches(&r, request_method, &path));
            proptest::prop_assert_eq!(r.matches(request_method, "no-slash"), None);
        }
    }

    #[test]
    fn bad_rules_are_refused() {
        for (method, path, perm) in [
            ("post", "/x", "a:b"),
            ("GET", "x", "a:b"),
            ("GET", "/x/{}", "a:b"),
            ("GET", "/x/{a-b}", "a:b"),
            ("GET", "/x/*", "a:b"),
            ("GET", "/x/../y", "a:b"),
            ("GET", "/x/", "a:b"),
            ("GET", "/x", "ab"),
            ("GET", "/x", ":b"),
        ] {
            let r = Rule::compile(&RuleConfig { permission: perm.into(), ..RuleConfig::route(method, path) });
            assert!(r.is_err(), "{method} {path} {perm}");
        }
    }

    #[test]
    fn wildcards_grant() {
        let none = Vec::new();
        assert!(has_permission(&perms(&["*"]), "events:create", &none, "u"));
        assert!(has_permission(&perms(&["events:*"]), "events:create", &none, "u"));
        assert!(has_permission(&perms(&["events:create"]), "events:create", &none, "u"));
        assert!(!has_permission(&perms(&["events:update"]), "events:create", &none, "u"));
        assert!(!has_permission(&perms(&["tickets:*"]), "events:create", &none, "u"));
        assert!(!has_permission(&perms(&["events"]), "events:create", &none, "u"));
    }

    #[test]
    fn own_permissions_need_the_caller_to_be_the_owner() {
        let customer = perms(&["tickets:view-own"]);
        let mine = vec![("userId", "u1")];
        let theirs = vec![("userId", "u2")];
        assert!(has_permission(&customer, "tickets:view", &mine, "u1"));
        assert!(!has_permission(&customer, "tickets:view", &theirs, "u1"));
        assert!(!has_permission(&customer, "tickets:view", &Vec::new(), "u1"));
        assert!(has_permission(&customer, "tickets:view-own", &Vec::new(), "u1"), "exact -own");
        assert!(has_permission(&perms(&["tickets:view"]), "tickets:view-own", &Vec::new(), "u1"));
        assert!(!has_permission(&perms(&["tickets:view-own"]), "tickets:transfer-own", &mine, "u1"));
    }
}
