use proptest::prelude::*;
use serde_json::json;

use crate::config::{FilterConfig, RuleConfig, Unmatched};
use crate::decision::tests::{bearer, config, denial, rule, token, Harness};
use crate::Decision;

use super::ShadowDifference;

fn shadow_rule(method: &str, path: &str, permission: &str, name: &str) -> RuleConfig {
    RuleConfig { name: Some(name.into()), shadow: true, ..rule(method, path, permission) }
}

/// The test config with `edit` applied to its event service (index 1).
fn with_event_service(edit: impl FnOnce(&mut crate::config::ServiceConfig)) -> FilterConfig {
    let mut config = config();
    edit(&mut config.services[1]);
    config
}

fn shadow_of(h: &mut Harness, method: &'static str, path: &'static str, role: &str) -> (bool, Option<ShadowDifference>) {
    let auth = bearer(&token(json!({"role": role, "jti": format!("{role}-{method}-{path}")})));
    let out = h.run(method, path, &[("authorization", &auth)]);
    (matches!(out.decision, Decision::Forward { .. }), out.observed.shadow)
}

fn label(difference: &Option<ShadowDifference>) -> Option<(&str, bool)> {
    difference.as_ref().map(|d| (&*d.label, d.denied))
}

#[test]
fn a_shadow_rule_lets_requests_through_and_says_where_it_would_deny() {
    let mut h = Harness::with(with_event_service(|svc| {
        svc.rules.push(shadow_rule("GET", "/api/v1/events/{eventId}/report", "reports:view", "event-report"));
    }));
    let (forwarded, difference) = shadow_of(&mut h, "GET", "/api/v1/events/e1/report", "door-staff");
    assert!(forwarded, "enforced: no rule covers it, any token will do");
    let difference = difference.expect("the shadow rule would refuse door staff");
    assert_eq!(
        difference,
        ShadowDifference { label: "event.event-report".into(), denied: true, permission: "reports:view".into(), tenant: "t1".into() }
    );
    assert_eq!(difference.metric_name(), "stagedoor_rbac_shadow_denied.event.event-report");
    let line = difference.log_line("GET", "/api/v1/events/e1/report");
    assert_eq!(line, "stagedoor: rbac shadow would deny: rule=event.event-report permission=reports:view route=GET /api/v1/events/e1/report tenant=t1");
    // Where the rule would allow, nothing is counted.
    assert_eq!(shadow_of(&mut h, "GET", "/api/v1/events/e1/report", "venue-manager"), (true, None));
    assert_eq!(shadow_of(&mut h, "GET", "/api/v1/events/e1", "door-staff"), (true, None), "another route");
}

#[test]
fn a_shadow_rule_before_an_enforced_one_trials_a_tighter_permission() {
    let mut h = Harness::with(with_event_service(|svc| {
        svc.rules.insert(0, shadow_rule("POST", "/api/v1/events", "events:publish", "create-needs-publish"));
    }));
    let (forwarded, difference) = shadow_of(&mut h, "POST", "/api/v1/events", "venue-manager");
    assert!(forwarded, "the enforced events:create rule decides");
    assert_eq!(label(&difference), Some(("event.create-needs-publish", true)));
    let (forwarded, difference) = shadow_of(&mut h, "POST", "/api/v1/events", "door-staff");
    assert!(!forwarded, "refused by the enforced rule as before");
    assert_eq!(difference, None, "both refuse: no difference");
}

#[test]
fn a_service_in_rbac_shadow_enforces_no_rule_and_counts_each() {
    let mut h = Harness::with(with_event_service(|svc| {
        svc.rbac_shadow = true;
        svc.unmatched = Unmatched::Deny;
        svc.rules[0].name = Some("create".into());
    }));
    assert_eq!(label(&shadow_of(&mut h, "POST", "/api/v1/events", "door-staff").1), Some(("event.create", true)));
    let (forwarded, difference) = shadow_of(&mut h, "PATCH", "/api/v1/events/e1", "door-staff");
    assert!(forwarded, "unmatched: deny is in shadow too");
    assert_eq!(label(&difference), Some(("event.unmatched", true)));
    assert_eq!(shadow_of(&mut h, "POST", "/api/v1/events", "venue-manager"), (true, None));
}

#[test]
fn a_roles_coming_permissions_are_counted_both_ways_under_the_role() {
    let mut config = config();
    let door = config.roles.get_mut("door-staff").unwrap();
    door.shadow_permissions = Some(vec!["tickets:validate".into(), "tickets:view".into(), "events:create".into()]);
    let manager = config.roles.get_mut("venue-manager").unwrap();
    manager.shadow_permissions = Some(vec!["tickets:view".into()]);
    let mut h = Harness::with(config);
    let (forwarded, difference) = shadow_of(&mut h, "POST", "/api/v1/events", "door-staff");
    assert!(!forwarded, "refused by the permissions in force");
    assert_eq!(label(&difference), Some(("role.door-staff", false)), "would be allowed");
    assert_eq!(denial(&h.run("POST", "/api/v1/events", &[])), (401, "TOKEN_MISSING"));
    let (forwarded, difference) = shadow_of(&mut h, "POST", "/api/v1/events", "venue-manager");
    assert!(forwarded);
    assert_eq!(label(&difference), Some(("role.venue-manager", true)), "would lose events:create");
    assert_eq!(difference.unwrap().permission, "events:create");
    // A token's permissions claim replaces the role's set in both decisions.
    let claimed = bearer(&token(json!({"role": "venue-manager", "permissions": ["events:create"], "jti": "claimed"})));
    assert_eq!(h.run("POST", "/api/v1/events", &[("authorization", &claimed)]).observed.shadow, None);
}

#[test]
fn rule_names_are_checked_and_unique_per_service() {
    let bad = with_event_service(|svc| svc.rules[0].name = Some("Has Space".into()));
    let e = crate::Policy::compile(&bad).unwrap_err().to_string();
    assert!(e.starts_with("service \"event\": rules[0]: name \"Has Space\""), "{e}");
    let twice = with_event_service(|svc| {
        svc.rules[0].name = Some("same".into());
        svc.rules[1].name = Some("same".into());
    });
    let e = crate::Policy::compile(&twice).unwrap_err().to_string();
    assert_eq!(e, "service \"event\": rules[1].name: \"same\" is used twice");
    let mut roles = config();
    roles.roles.get_mut("customer").unwrap().shadow_permissions = Some(vec!["nope".into()]);
    assert!(crate::Policy::compile(&roles).unwrap_err().to_string().contains("permission \"nope\""));
}

proptest! {
    /// Whatever is in shadow, a request gets exactly what it gets without the shadow parts:
    /// shadow mode never refuses nor lets through anything the enforced policy would not.
    #[test]
    fn shadow_parts_never_change_the_enforced_decision(
        method in proptest::sample::select(vec!["GET", "POST", "PUT", "DELETE"]),
        path in proptest::sample::select(vec![
            "/api/v1/events", "/api/v1/events/e1", "/api/v1/events/e1/report", "/api/v1/venues/v1/events",
            "/api/v1/venues/v9/events", "/api/v1/events/validate", "/api/v1/events/users/u1/tickets",
        ]),
        role in proptest::sample::select(vec!["door-staff", "venue-manager", "customer", "admin", "box-office"]),
        rbac_shadow in any::<bool>(),
        deny_unmatched in any::<bool>(),
        role_change in any::<bool>(),
    ) {
        let unmatched = if deny_unmatched { Unmatched::Deny } else { Unmatched::Authenticated };
        let enforced_only = with_event_service(|svc| {
            svc.unmatched = if rbac_shadow { Unmatched::Authenticated } else { unmatched };
            if rbac_shadow {
                svc.rules.clear();
            }
        });
        let with_shadow = with_event_service(|svc| {
            svc.unmatched = unmatched;
            svc.rbac_shadow = rbac_shadow;
            svc.rules.insert(0, shadow_rule("POST", "/api/v1/events", "events:publish", "tight"));
            svc.rules.push(shadow_rule("GET", "/api/v1/events/{eventId}/report", "reports:view", "report"));
        });
        let mut with_shadow = with_shadow;
        if role_change {
            with_shadow.roles.get_mut(role).unwrap().shadow_permissions = Some(vec!["events:create".into()]);
        }
        let auth = bearer(&token(json!({"role": role})));
        let method: &'static str = method;
        let path: &'static str = path;
        let plain = Harness::with(enforced_only).run(method, path, &[("authorization", &auth)]);
        let shadowed = Harness::with(with_shadow).run(method, path, &[("authorization", &auth)]);
        // What the request gets: its refusal, or what is removed and set on the way up.
        fn gets(out: &crate::Outcome<'_>) -> (Option<crate::reply::Denial>, Vec<String>, Vec<(&'static str, String)>) {
            match &out.decision {
                Decision::Deny(d) => (Some(d.clone()), Vec::new(), Vec::new()),
                Decision::Forward { remove, .. } => {
                    (None, remove.iter().map(|r| (*r).to_owned()).collect(), out.decision.headers_to_set())
                }
            }
        }
        prop_assert_eq!(gets(&plain), gets(&shadowed));
        prop_assert_eq!(plain.observed.shadow, None);
    }
}
