use crate::compile::{compile, CompiledLimits, ConfigError};
use crate::config::GlobalRateLimitConfig;
use crate::fail_mode::FailMode;
use crate::plan::{path_under, plan, RequestView};

const BASE: &str = "
salt: test-salt
unlimited_roles: [system]
limits:
  - name: api
    requests: 100
    period_ms: 60000
    roles:
      admin: { unlimited: true }
      venue-manager: { requests: 1000 }
  - name: login
    requests: 5
    period_ms: 60000
    per: address
    routes: [/api/v1/auth/login]
";

fn parse(yaml: &str) -> GlobalRateLimitConfig {
    serde_yaml::from_str(yaml).unwrap()
}

fn compiled(yaml: &str) -> CompiledLimits {
    compile(&parse(yaml), |_| None).unwrap()
}

fn refused(yaml: &str) -> ConfigError {
    compile(&parse(yaml), |_| None).unwrap_err()
}

#[test]
fn the_defaults_are_the_issues() {
    let c = compiled(BASE);
    assert_eq!(c.timeout_ms, 20);
    let api = &c.limits[0];
    assert_eq!((api.rate.requests, api.rate.burst, api.rate.emission_us), (100, 100, 600_000));
    assert!(!api.shadow && !api.count_refused && api.fail_mode.is_none());
}

#[test]
fn errors_name_the_field() {
    let cases = [
        ("salt: ''\nlimits: [{ name: a, requests: 1, period_ms: 1000 }]", "global_rate_limit.salt: must not be empty"),
        ("salt: undefined\nlimits: [{ name: a, requests: 1, period_ms: 1000 }]", "global_rate_limit.salt: is \"undefined\""),
        ("limits: [{ name: a, requests: 1, period_ms: 1000 }]", "global_rate_limit.salt: required"),
        ("salt_env: NOPE\nlimits: [{ name: a, requests: 1, period_ms: 1000 }]", "global_rate_limit.salt_env: NOPE is not set"),
        ("salt: s\nlimits: [{ name: a, requests: 0, period_ms: 1000 }]", "global_rate_limit.limits[a].requests: must be positive"),
        ("salt: s\nlimits: [{ name: a, requests: 1, period_ms: 10 }]", "global_rate_limit.limits[a].period_ms: must be at least 1000"),
        ("salt: s\nlimits: [{ name: a, requests: 1, period_ms: 1000, burst: 0 }]", "global_rate_limit.limits[a].burst: must be positive"),
        ("salt: s\nlimits: [{ name: A, requests: 1, period_ms: 1000 }]", "global_rate_limit.limits[0].name: must be"),
        ("salt: s\nlimits: [{ name: a, requests: 1, period_ms: 1000 }, { name: a, requests: 1, period_ms: 1000 }]", "global_rate_limit.limits[a].name: is used twice"),
        ("salt: s\nlimits: [{ name: a, requests: 1, period_ms: 1000, routes: [api] }]", "global_rate_limit.limits[a].routes[0]: must start with /"),
        ("salt: s\nlimits: [{ name: a, requests: 1, period_ms: 1000, roles: { r: { unlimited: true, requests: 3 } } }]", "global_rate_limit.limits[a].roles.r.unlimited: an unlimited role"),
        ("salt: s\nlimits: [{ name: a, requests: 1, period_ms: 1000, roles: { r: {} } }]", "global_rate_limit.limits[a].roles.r.requests: give requests"),
        ("salt: s\ntimeout_ms: 0\nlimits: [{ name: a, requests: 1, period_ms: 1000 }]", "global_rate_limit.timeout_ms: must be 1..=1000"),
        ("salt: s\nlimits: []", "global_rate_limit.limits: must name at least one limit"),
    ];
    for (yaml, expected) in cases {
        let message = refused(yaml).to_string();
        assert!(message.starts_with(expected), "{yaml}\n=> {message}\nexpected {expected}");
    }
}

#[test]
fn the_salt_comes_from_the_environment() {
    let config = parse("salt_env: RL_SALT\nlimits: [{ name: a, requests: 1, period_ms: 1000 }]");
    assert!(compile(&config, |var| (var == "RL_SALT").then(|| "s3cret".to_owned())).is_ok());
    let empty = compile(&config, |_| Some(String::new())).unwrap_err();
    assert_eq!(empty.field, "salt_env");
}

#[test]
fn a_user_is_counted_per_user_and_tenant_an_anonymous_caller_per_hashed_address() {
    let c = compiled(BASE);
    let user = RequestView { path: "/api/v1/events", remote_address: Some("10.0.0.1"), user: Some("u1"), tenant: Some("t1"), role: Some("customer") };
    let p = plan(&c, &user);
    assert_eq!(p.limits.len(), 1);
    assert_eq!(p.limits[0].1.key, "sd:rl:{u:2:t1:2:u1}:3:api");
    let anonymous = RequestView { path: "/api/v1/events", remote_address: Some("10.0.0.1"), ..Default::default() };
    let key = &plan(&c, &anonymous).limits[0].1.key;
    assert!(key.starts_with("sd:rl:{a:") && !key.contains("10.0.0.1"), "{key}");
}

#[test]
fn per_route_and_per_role_limits() {
    let c = compiled(BASE);
    let login = RequestView { path: "/api/v1/auth/login", remote_address: Some("10.0.0.1"), ..Default::default() };
    let login_plan = plan(&c, &login);
    let names: Vec<&str> = login_plan.limits.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["api", "login"]);
    assert_eq!(plan(&c, &login).fail_mode, FailMode::Closed, "logins fail closed by default");
    // per: address: a verified user is not counted by the login limit.
    let user_login = RequestView { user: Some("u1"), ..login.clone() };
    assert_eq!(plan(&c, &user_login).limits.len(), 1);
    let manager = RequestView { path: "/api/v1/events", user: Some("u"), role: Some("venue-manager"), ..Default::default() };
    assert_eq!(plan(&c, &manager).limits[0].1.rate.requests, 1000);
    assert_eq!(plan(&c, &manager).fail_mode, FailMode::LocalFallback);
    let admin = RequestView { role: Some("admin"), ..manager.clone() };
    assert!(plan(&c, &admin).limits.is_empty(), "admin is unlimited on api");
    let system = RequestView { role: Some("system"), ..login.clone() };
    assert!(plan(&c, &system).limits.is_empty(), "system is unlimited everywhere");
}

#[test]
fn descriptor_entries_are_read_without_the_query() {
    let view = RequestView::from_entries([("path", "/api/v1/auth/login?x=1"), ("remote_address", "10.0.0.1"), ("user", ""), ("other", "x")]);
    assert_eq!(view, RequestView { path: "/api/v1/auth/login", remote_address: Some("10.0.0.1"), ..Default::default() });
}

#[test]
fn route_prefixes_match_whole_segments() {
    assert!(path_under("/api/v1/auth/login", "/api/v1/auth"));
    assert!(path_under("/api/v1/auth/login", "/api/v1/auth/"));
    assert!(path_under("/api/v1/auth", "/api/v1/auth"));
    assert!(!path_under("/api/v1/authors", "/api/v1/auth"));
    assert!(path_under("/anything", "/"));
}

#[test]
fn closed_prefixes_agree_with_the_plans_fail_mode() {
    use crate::plan::closed_prefixes;
    let yaml = "
salt: s
limits:
  - { name: all, requests: 100, period_ms: 60000 }
  - { name: pay, requests: 10, period_ms: 60000, routes: [/api/v1/payments/], fail_mode: closed }
  - { name: events, requests: 10, period_ms: 60000, routes: [/api/v1/events], fail_mode: open }
";
    let c = compiled(yaml);
    assert_eq!(closed_prefixes(&c), ["/api/v1/auth", "/api/v1/payments"]);
    for path in ["/api/v1/auth/login", "/api/v1/auth", "/api/v1/authors", "/api/v1/payments/1", "/api/v1/events/2", "/", "/health"] {
        let view = RequestView { path, remote_address: Some("10.0.0.1"), ..Default::default() };
        let closed = plan(&c, &view).fail_mode == FailMode::Closed;
        assert_eq!(closed, closed_prefixes(&c).iter().any(|p| path_under(path, p)), "{path}");
    }
    assert!(closed_prefixes(&compiled("salt: s\nlimits: [{ name: a, requests: 1, period_ms: 1000, fail_mode: closed }]")) == ["/"]);
    assert!(closed_prefixes(&compiled("salt: s\nlimits: [{ name: a, requests: 1, period_ms: 1000, fail_mode: open }]")).is_empty());
}
