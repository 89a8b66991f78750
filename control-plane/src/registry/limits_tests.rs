use super::*;
use crate::registry::InstanceSpec;

fn registry(services: usize, routes: usize, instances: usize) -> Registry {
    let mut yaml = String::from("services:\n");
    for s in 0..services {
        let prefixes: Vec<String> = (0..routes).map(|r| format!("{{prefix: /s{s}/r{r}}}")).collect();
        let hosts: Vec<String> = (0..instances).map(|i| format!("{{address: 10.0.{s}.{i}, port: 80}}")).collect();
        yaml += &format!("  - name: s{s}\n    routes: [{}]\n    instances: [{}]\n", prefixes.join(", "), hosts.join(", "));
    }
    Registry::parse("r.yaml", &crate::test_support::registry_yaml(&yaml)).unwrap()
}

fn limits(services: usize, routes_per_service: usize, instances_per_service: usize) -> Limits {
    Limits { services, routes_per_service, instances_per_service }
}

#[test]
fn a_registry_at_each_limit_passes_and_one_over_is_refused_naming_the_limit() {
    let r = registry(3, 2, 2);
    assert_eq!(limits(3, 2, 2).check(&r), Ok(()));
    assert_eq!(limits(2, 2, 2).check(&r), Err(OverLimit::Services { count: 3, limit: 2 }));
    let routes = limits(3, 1, 2).check(&r).unwrap_err();
    assert_eq!(routes, OverLimit::Routes { service: "s0".into(), count: 2, limit: 1 });
    assert_eq!(
        routes.to_string(),
        "service \"s0\": routes: 2 prefixes is over the limit of 1 per service (serve --max-routes-per-service)"
    );
    let instances = limits(3, 2, 1).check(&r).unwrap_err().to_string();
    assert_eq!(instances, "service \"s0\": instances: 2 is over the limit of 1 per service (serve --max-instances-per-service)");
}

fn live(service: &str, count: u8) -> LiveInstances {
    let set = (0..count).map(|i| InstanceSpec { address: format!("10.9.0.{i}"), port: 80 }).collect();
    LiveInstances::from([(service.to_owned(), set)])
}

#[test]
fn live_instances_within_the_limit_are_borrowed_as_they_are() {
    let r = registry(1, 1, 1);
    let found = live("s0", 2);
    let (served, capped) = limits(1, 1, 3).cap_live(&r, &found);
    assert!(matches!(served, Cow::Borrowed(_)), "no copy when nothing is over");
    assert!(capped.is_empty());
}

#[test]
fn live_instances_over_the_limit_are_cut_to_what_the_static_ones_leave_lowest_first() {
    let r = registry(1, 1, 1);
    let found = live("s0", 4);
    let (served, capped) = limits(1, 1, 3).cap_live(&r, &found);
    let kept: Vec<&str> = served["s0"].iter().map(|i| i.address.as_str()).collect();
    assert_eq!(kept, ["10.9.0.0", "10.9.0.1"], "3 per service, 1 of them static");
    assert_eq!(capped, [Capped { service: "s0".into(), found: 5, served: 3 }]);
}

#[test]
fn a_new_live_instance_past_the_limit_is_refused_and_a_held_one_is_not() {
    let r = registry(1, 1, 1);
    let found = live("s0", 2);
    let new = InstanceSpec { address: "10.9.0.9".into(), port: 80 };
    assert_eq!(limits(1, 1, 4).check_new_instance(&r, &found, "s0", &new), Ok(()));
    let refused = limits(1, 1, 3).check_new_instance(&r, &found, "s0", &new);
    assert_eq!(refused, Err(OverLimit::Instances { service: "s0".into(), count: 4, limit: 3 }));
    let held = InstanceSpec { address: "10.9.0.1".into(), port: 80 };
    assert_eq!(limits(1, 1, 3).check_new_instance(&r, &found, "s0", &held), Ok(()), "a heartbeat");
}

#[test]
fn checked_since_a_previous_registry_only_what_differs_is_checked_and_refused_as_ever() {
    let before = registry(3, 1, 1);
    // s1 edited to 3 prefixes, s3 added.
    let after = registry(4, 1, 1);
    let mut after = after.rebased_on(&before);
    if let Some(s1) = after.services.get_mut("s1") {
        let routes = &mut std::sync::Arc::make_mut(s1).routes;
        let extra = routes[0].clone();
        routes.extend([extra.clone(), extra]);
    }
    let since = Some(&before.services);
    assert_eq!(limits(4, 3, 1).check_since(&after, since), limits(4, 3, 1).check(&after));
    let refused = limits(4, 2, 1).check_since(&after, since);
    assert_eq!(refused, Err(OverLimit::Routes { service: "s1".into(), count: 3, limit: 2 }));
    assert_eq!(refused, limits(4, 2, 1).check(&after));
    assert_eq!(limits(3, 3, 1).check_since(&after, since), Err(OverLimit::Services { count: 4, limit: 3 }));
    // What did not change is taken as checked: the previous registry passed these limits.
    assert_eq!(limits(4, 3, 1).check_since(&before, Some(&before.services)), Ok(()));
}
