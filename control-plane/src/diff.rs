//! What a registry change does, service by service, for `stagedoor apply` to show before
//! it pushes.

use std::collections::BTreeMap;

use crate::registry::{Registry, ServiceSpec};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(String),
    Removed(String),
    /// The service and the top-level fields that differ.
    Changed(String, Vec<&'static str>),
}

pub fn diff(before: &Registry, after: &Registry) -> Vec<Change> {
    let mut changes = Vec::new();
    let names: std::collections::BTreeSet<&String> = before.services.keys().chain(after.services.keys()).collect();
    for name in names {
        match (before.services.get(name), after.services.get(name)) {
            (None, Some(_)) => changes.push(Change::Added(name.clone())),
            (Some(_), None) => changes.push(Change::Removed(name.clone())),
            (Some(a), Some(b)) if a != b => changes.push(Change::Changed(name.clone(), changed_fields(a, b))),
            _ => {}
        }
    }
    changes
}

/// Registry-wide sections that differ (auth, identity, roles, cors).
pub fn global_changes(before: &Registry, after: &Registry) -> Vec<&'static str> {
    // Compared as written with literal secrets masked: the served registry comes back
    // redacted, so its secrets cannot be compared, only where they come from.
    let (a, b) = (before.to_file(true), after.to_file(true));
    let mut fields = Vec::new();
    if a.auth != b.auth {
        fields.push("auth");
    }
    if a.identity != b.identity {
        fields.push("identity");
    }
    if before.roles != after.roles {
        fields.push("roles");
    }
    if before.cors != after.cors {
        fields.push("cors");
    }
    fields
}

fn changed_fields(a: &ServiceSpec, b: &ServiceSpec) -> Vec<&'static str> {
    let as_map = |s: &ServiceSpec| -> BTreeMap<String, serde_json::Value> {
        serde_json::to_value(s)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .map(|o| o.into_iter().collect())
            .unwrap_or_default()
    };
    let (ma, mb) = (as_map(a), as_map(b));
    const FIELDS: [&str; 7] = ["routes", "instances", "public_paths", "rules", "request_headers", "traffic", "name"];
    FIELDS.into_iter().filter(|f| ma.get(*f) != mb.get(*f)).collect()
}

pub fn render(changes: &[Change], global: &[&str]) -> String {
    if changes.is_empty() && global.is_empty() {
        return String::from("no changes\n");
    }
    let mut out = String::new();
    for g in global {
        out.push_str(&format!("~ {g}\n"));
    }
    for c in changes {
        match c {
            Change::Added(name) => out.push_str(&format!("+ service {name}\n")),
            Change::Removed(name) => out.push_str(&format!("- service {name}\n")),
            Change::Changed(name, fields) => out.push_str(&format!("~ service {name}: {}\n", fields.join(", "))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(services: &str) -> Registry {
        Registry::parse("r", &crate::test_support::registry_yaml(services)).unwrap()
    }

    #[test]
    fn lists_added_removed_and_changed_services_with_their_fields() {
        let before = registry("services:\n  - name: a\n    routes: [{prefix: /a}]\n  - name: b\n    routes: [{prefix: /b}]\n");
        let after = registry(
            "services:\n  - name: a\n    routes: [{prefix: /a2}]\n    public_paths: [/a2/x]\n  - name: c\n    routes: [{prefix: /c}]\n",
        );
        let changes = diff(&before, &after);
        assert_eq!(
            changes,
            [
                Change::Changed("a".into(), vec!["routes", "public_paths"]),
                Change::Removed("b".into()),
                Change::Added("c".into())
            ]
        );
        assert_eq!(render(&changes, &[]), "~ service a: routes, public_paths\n- service b\n+ service c\n");
        assert_eq!(render(&diff(&before, &before), &global_changes(&before, &before)), "no changes\n");
    }
}
