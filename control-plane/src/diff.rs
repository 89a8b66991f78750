//! What a registry change does, service by service, for `stagedoor apply` to show before
//! it pushes.

use crate::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(String),
    Removed(String),
    /// The service and the top-level fields that differ.
    Changed(String, Vec<String>),
}

pub fn diff(before: &Registry, after: &Registry) -> Vec<Change> {
    let mut changes = Vec::new();
    let names: std::collections::BTreeSet<&String> = before.services.keys().chain(after.services.keys()).collect();
    for name in names {
        match (before.services.get(name), after.services.get(name)) {
            (None, Some(_)) => changes.push(Change::Added(name.clone())),
            (Some(_), None) => changes.push(Change::Removed(name.clone())),
            (Some(a), Some(b)) if a != b => changes.push(Change::Changed(name.clone(), differing_fields(&fields(&**a), &fields(&**b)))),
            _ => {}
        }
    }
    changes
}

/// Registry-wide sections that differ: every top-level section but `services`, derived
/// from the file's own shape so a new section cannot be left out.
pub fn global_changes(before: &Registry, after: &Registry) -> Vec<String> {
    differing_fields(&sections(before), &sections(after))
}

/// The sections as written with literal secrets masked (the served registry comes back
/// redacted, so its secrets cannot be compared, only where they come from), and the roles
/// in force (written or the defaults), as the version counts them.
fn sections(registry: &Registry) -> Fields {
    let mut sections = fields(&registry.to_file(true));
    sections.retain(|(name, _)| name != "services");
    let roles = serde_yaml::to_value(&registry.roles).unwrap_or(serde_yaml::Value::Null);
    match sections.iter_mut().find(|(name, _)| name == "roles") {
        Some((_, value)) => *value = roles,
        None => sections.push((String::from("roles"), roles)),
    }
    sections
}

/// A structure's serialized top-level fields, in declaration order.
type Fields = Vec<(String, serde_yaml::Value)>;

fn fields(value: &impl serde::Serialize) -> Fields {
    // A registry's types serialize to a mapping and cannot fail (the file is written so).
    match serde_yaml::to_value(value) {
        Ok(serde_yaml::Value::Mapping(map)) => {
            map.into_iter().filter_map(|(k, v)| k.as_str().map(|k| (k.to_owned(), v))).collect()
        }
        _ => Vec::new(),
    }
}

/// Names of the fields whose values differ, a field missing on one side included: the
/// `before` order, then fields only `after` has.
fn differing_fields(before: &Fields, after: &Fields) -> Vec<String> {
    let get = |fields: &Fields, name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let mut names: Vec<&String> = before.iter().map(|(n, _)| n).collect();
    names.extend(after.iter().map(|(n, _)| n).filter(|n| before.iter().all(|(b, _)| b != *n)));
    names.into_iter().filter(|n| get(before, n) != get(after, n)).cloned().collect()
}

pub fn render(changes: &[Change], global: &[String]) -> String {
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
                Change::Changed("a".into(), vec!["routes".into(), "public_paths".into()]),
                Change::Removed("b".into()),
                Change::Added("c".into())
            ]
        );
        assert_eq!(render(&changes, &[]), "~ service a: routes, public_paths\n- service b\n+ service c\n");
        assert_eq!(render(&diff(&before, &before), &global_changes(&before, &before)), "no changes\n");
    }

    #[test]
    fn every_registry_wide_section_is_compared() {
        let services = "services:\n  - name: a\n    routes: [{prefix: /a}]\n";
        let before = registry(services);
        let edits = [
            ("rate_limit", format!("rate_limit: {{ requests: 100, window_ms: 60000 }}\n{services}")),
            ("webhooks", format!("webhooks: [{{ path: /a/stripe, stripe_secret: whsec_x }}]\n{services}")),
            ("cors", format!("cors: {{ allowed_origins: [https://app.example.com] }}\n{services}")),
            ("roles", format!("roles: {{ admin: {{ permissions: ['*'], venue_scoped: false }} }}\n{services}")),
        ];
        for (section, yaml) in edits {
            let after = registry(&yaml);
            assert_ne!(before.version, after.version, "{section}");
            assert_eq!(global_changes(&before, &after), [section], "{section}");
        }
    }

    #[test]
    fn every_service_field_is_compared() {
        let before = registry("services:\n  - name: a\n    routes: [{prefix: /a}]\n");
        let after = registry("services:\n  - name: a\n    routes: [{prefix: /a}]\n    request_headers: { allow: [x-seat] }\n");
        assert_ne!(before.version, after.version);
        assert_eq!(diff(&before, &after), [Change::Changed("a".into(), vec!["request_headers".into()])]);
    }
}
