//! Role-based access: route rules that name a required permission, permission matching with
//! wildcards and `-own`, and venue scope.

use std::collections::BTreeMap;

use crate::config::{RoleConfig, RuleConfig};
use crate::path::is_normalized;

/// A compiled route rule.
#[derive(Debug, Clone)]
pub struct Rule {
    method: Option<String>,
    segments: Vec<Segment>,
    pub permission: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// Path params captured by a rule, e.g. `venueId -> "v1"`.
pub type Params<'a> = Vec<(&'a str, &'a str)>;

impl Rule {
    pub fn compile(config: &RuleConfig) -> Result<Self, String> {
        let method = match config.method.as_str() {
            "*" => None,
            m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()) => Some(m.to_owned()),
            m => return Err(format!("method {m:?} must be an upper-case HTTP method or '*'")),
        };
        if !config.path.starts_with('/') {
            return Err(format!("path {:?} must start with '/'", config.path));
        }
        let segments = config.path[1..]
            .split('/')
            .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) if !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                    Ok(Segment::Param(name.to_owned()))
                }
                Some(_) => Err(format!("path {:?}: bad parameter segment {s:?}", config.path)),
                None if s.contains(['{', '}', '*']) => Err(format!("path {:?}: bad segment {s:?}", config.path)),
                None => Ok(Segment::Literal(s.to_owned())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let literal: String = config.path.replace(['{', '}'], "");
        if !is_normalized(&literal) {
            return Err(format!("path {:?} is not a normalized path", config.path));
        }
        if !is_permission(&config.permission) {
            return Err(format!("permission {:?} must be resource:action", config.permission));
        }
        Ok(Self { method, segments, permission: config.permission.clone() })
    }

    /// Matches a normalized path (no query); returns the captured params.
    pub fn matches<'r, 'p>(&'r self, method: &str, path: &'p str) -> Option<Params<'p>>
    where
        'r: 'p,
    {
        if self.method.as_deref().is_some_and(|m| m != method) {
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
            Segment::Literal(lit) => lit == part,
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

fn is_permission(p: &str) -> bool {
    p == "*"
        || p.split_once(':').is_some_and(|(resource, action)| {
            let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*');
            ok(resource) && ok(action)
        })
}

/// Checks role and permission names in a roles table.
pub fn compile_roles(roles: &BTreeMap<String, RoleConfig>) -> Result<BTreeMap<String, RoleConfig>, String> {
    for (name, role) in roles {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
            return Err(format!("role {name:?}: name must be lower-case letters and '-'"));
        }
        if let Some(bad) = role.permissions.iter().find(|p| !is_permission(p)) {
            return Err(format!("role {name:?}: permission {bad:?} must be resource:action"));
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
        Rule::compile(&RuleConfig { method: method.into(), path: path.into(), permission: permission.into() }).unwrap()
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

    /// The rule as a plain segment walk: what the pre-checked match must agree with.
    fn reference_matches<'p>(rule: &'p Rule, method: &str, path: &'p str) -> Option<Params<'p>> {
        if rule.method.as_deref().is_some_and(|m| m != method) {
            return None;
        }
        let parts: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        if parts.len() != rule.segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (part, segment) in parts.iter().zip(&rule.segments) {
            match segment {
                Segment::Literal(lit) if lit == part => {}
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
                "api", "v1", "venues", "events", "users", "tickets", "v9", "", "a",
            ]), 0..7),
            request_method in proptest::sample::select(vec!["GET", "POST"]),
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
            ("GET", "/x", "ab"),
            ("GET", "/x", ":b"),
        ] {
            let r = Rule::compile(&RuleConfig { method: method.into(), path: path.into(), permission: perm.into() });
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
