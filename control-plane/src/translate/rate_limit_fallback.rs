//! The per-Envoy fallback for global limits whose fail mode is `local_fallback` (the default
//! off /api/v1/auth): Envoy's local_ratelimit filter after the two global ratelimit filters,
//! one token bucket per verified user+tenant (per client address for anonymous requests) and
//! limit, at the limit's own rate and burst.
//!
//! Why it only bites when the limiter is away: a request the global limiter refuses never
//! reaches this filter (refusals are free there too, unless `count_refused`), and every
//! request the global count admits is also in that count, so this Envoy's share can never
//! exceed the fleet's. When the limiter is unreachable or times out, the fail-open filter lets
//! the request through and this bucket is the limit, per Envoy.
//!
//! Envoy's buckets are "dynamic" descriptors: entries with an empty value get one bucket per
//! distinct value, at most `local_fallback_keys` of them in all (least recently used go).

use envoy_types::pb::envoy::config::core::v3::{header_value_option, HeaderValue, HeaderValueOption, RuntimeFractionalPercent};
use envoy_types::pb::envoy::config::route::v3::rate_limit::{action, Action};
use envoy_types::pb::envoy::config::route::v3::{header_matcher, HeaderMatcher, RateLimit as RouteRateLimit};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{rate_limit_descriptor::Entry, LocalRateLimitDescriptor, XRateLimitHeadersRfcVersion};
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{http_filter, HttpFilter};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, RegexMatcher, StringMatcher};
use envoy_types::pb::envoy::r#type::v3::{fractional_percent, FractionalPercent, TokenBucket};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use stagedoor_ratelimit::compile::{CompiledLimit, CompiledLimits};
use stagedoor_ratelimit::config::Per;
use stagedoor_ratelimit::fail_mode::FailMode;
use stagedoor_ratelimit::gcra::Rate;

use super::any::to_any;
use super::cluster::millis;
use super::rate_limit_global::under_any_regex;

pub const FILTER_NAME: &str = "envoy.filters.http.local_ratelimit.global_fallback";

/// Descriptor keys of the fallback's own entries (Envoy's `remote_address` is fixed).
const LIMIT: &str = "limit";
const ROLE: &str = "role";
const USER: &str = "user";
const TENANT: &str = "tenant";
const ANONYMOUS: &str = "anonymous";
const REMOTE_ADDRESS: &str = "remote_address";
/// The role entry's value for callers with no override of their own.
const OTHER_ROLES: &str = "other";

/// One bucket class: a limit at one rate, for one set of roles.
struct Class<'a> {
    limit: &'a CompiledLimit,
    rate: Rate,
    /// `Some(role)`: that role's override; `None`: every role without one (and no role).
    role: Option<&'a str>,
    /// Roles the `None` class leaves out: overrides and unlimited roles.
    excluded_roles: Vec<&'a str>,
}

/// The filter, or none when no limit falls back locally.
pub fn filter(limits: Option<&CompiledLimits>) -> Option<HttpFilter> {
    let limits = limits?;
    let classes = classes(limits);
    let longest_retry_s = classes.iter().map(|c| c.rate.emission_us.div_ceil(1_000_000)).max()?;
    let mut rate_limits = Vec::new();
    let mut descriptors = Vec::new();
    for class in &classes {
        let (producers, buckets) = class_descriptors(class);
        rate_limits.extend(producers);
        descriptors.extend(buckets);
    }
    let always = || RuntimeFractionalPercent {
        default_value: Some(FractionalPercent { numerator: 100, denominator: fractional_percent::DenominatorType::Hundred as i32 }),
        runtime_key: String::new(),
    };
    let config = LocalRateLimit {
        stat_prefix: String::from("stagedoor_global_fallback"),
        // Required, never the limit: as large as a bucket can be, and not consumed.
        token_bucket: Some(bucket(u32::MAX, u32::MAX, 1000)),
        filter_enabled: Some(always()),
        filter_enforced: Some(always()),
        descriptors,
        rate_limits,
        max_dynamic_descriptors: Some(UInt32Value { value: u32::try_from(limits.local_fallback_keys).unwrap_or(u32::MAX) }),
        always_consume_default_token_bucket: Some(BoolValue { value: false }),
        // Off: with the limiter up, the service's X-RateLimit-* are the ones on the reply.
        enable_x_ratelimit_headers: XRateLimitHeadersRfcVersion::Off as i32,
        // On its 429 only. A token comes back within one emission interval of the slowest
        // limit, so that bounds the wait; the bucket's own figures are not in a header Envoy
        // can template, hence no X-RateLimit-Limit here.
        response_headers_to_add: [("retry-after", longest_retry_s.to_string()), ("x-ratelimit-remaining", String::from("0")), ("x-ratelimit-reset", longest_retry_s.to_string())]
            .into_iter()
            .map(|(key, value)| HeaderValueOption {
                header: Some(HeaderValue { key: key.to_owned(), value, ..Default::default() }),
                append_action: header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    Some(HttpFilter { name: FILTER_NAME.to_owned(), config_type: Some(http_filter::ConfigType::TypedConfig(to_any(&config))), ..Default::default() })
}

/// Limits that fall back locally (explicitly or by default), minus shadow ones (they never
/// refuse), split by role: the limit's own rate for roles without an override, each
/// override's rate for its role; unlimited roles get no bucket.
fn classes(limits: &CompiledLimits) -> Vec<Class<'_>> {
    let mut classes = Vec::new();
    for limit in limits.limits.iter().filter(|l| !l.shadow && matches!(l.fail_mode, None | Some(FailMode::LocalFallback))) {
        let mut excluded: Vec<&str> = limits.unlimited_roles.iter().map(String::as_str).collect();
        excluded.extend(limit.roles.keys().map(String::as_str));
        excluded.sort_unstable();
        excluded.dedup();
        let unlimited_everywhere = |role: &str| limits.unlimited_roles.iter().any(|r| r == role);
        for (role, rate) in &limit.roles {
            if let Some(rate) = rate.filter(|_| !unlimited_everywhere(role)) {
                classes.push(Class { limit, rate, role: Some(role), excluded_roles: Vec::new() });
            }
        }
        classes.push(Class { limit, rate: limit.rate, role: None, excluded_roles: excluded });
    }
    classes
}

/// The route-side producers (which descriptor a request makes) and the buckets they fill.
fn class_descriptors(class: &Class<'_>) -> (Vec<RouteRateLimit>, Vec<LocalRateLimitDescriptor>) {
    let role_value = class.role.unwrap_or(OTHER_ROLES);
    let mut head = vec![limit_action(class.limit)];
    head.extend(role_action(class));
    let mut producers = Vec::new();
    let mut buckets = Vec::new();
    let dynamic = |key: &str| Entry { key: key.to_owned(), value: String::new() };
    let fixed = |key: &str, value: &str| Entry { key: key.to_owned(), value: value.to_owned() };
    let mut head_entries = vec![fixed(LIMIT, &class.limit.name)];
    if class.role.is_some() || !class.excluded_roles.is_empty() {
        head_entries.push(fixed(ROLE, role_value));
    }
    let token_bucket = Some(bucket(class.rate.burst, class.rate.requests, class.rate.period_us / 1000));
    if matches!(class.limit.per, Per::User | Per::UserOrAddress) {
        let mut actions = head.clone();
        actions.push(header_action("x-user-id", USER, false));
        // Absent tenant: the entry is left out, so the descriptor is (.., user) alone.
        actions.push(header_action("x-tenant-id", TENANT, true));
        producers.push(RouteRateLimit { actions, ..Default::default() });
        for tail in [vec![dynamic(USER), dynamic(TENANT)], vec![dynamic(USER)]] {
            let entries = head_entries.iter().cloned().chain(tail).collect();
            buckets.push(LocalRateLimitDescriptor { entries, token_bucket, ..Default::default() });
        }
    }
    // Anonymous requests: an address limit never counts a verified user (as `plan.rs`).
    if matches!(class.limit.per, Per::Address | Per::UserOrAddress) && class.role.is_none() {
        let mut actions = head;
        actions.push(match_action(ANONYMOUS, "true", false, "x-user-id", header_matcher::HeaderMatchSpecifier::PresentMatch(true)));
        actions.push(Action { action_specifier: Some(action::ActionSpecifier::RemoteAddress(action::RemoteAddress {})) });
        producers.push(RouteRateLimit { actions, ..Default::default() });
        let entries = head_entries.iter().cloned().chain([fixed(ANONYMOUS, "true"), dynamic(REMOTE_ADDRESS)]).collect();
        buckets.push(LocalRateLimitDescriptor { entries, token_bucket, ..Default::default() });
    }
    (producers, buckets)
}

/// `limit=<name>` when the path is under one of the limit's routes (always, without routes).
fn limit_action(limit: &CompiledLimit) -> Action {
    if limit.routes.is_empty() {
        return Action {
            action_specifier: Some(action::ActionSpecifier::GenericKey(action::GenericKey {
                descriptor_value: limit.name.clone(),
                descriptor_key: LIMIT.to_owned(),
                ..Default::default()
            })),
        };
    }
    match_action(LIMIT, &limit.name, true, ":path", regex(&under_any_regex(&limit.routes)))
}

/// `role=<role>` for an override's class; `role=other` when the verified role is none of
/// the excluded ones (no role header at all counts as other).
fn role_action(class: &Class<'_>) -> Option<Action> {
    match class.role {
        Some(role) => Some(match_action(ROLE, role, true, "x-user-role", exact(role))),
        None if class.excluded_roles.is_empty() => None,
        None => {
            let alternatives: Vec<String> = class.excluded_roles.iter().map(|r| regex_escape(r)).collect();
            Some(match_action(ROLE, OTHER_ROLES, false, "x-user-role", regex(&format!("^(?:{})$", alternatives.join("|")))))
        }
    }
}

fn match_action(key: &str, value: &str, expect_match: bool, header: &str, specifier: header_matcher::HeaderMatchSpecifier) -> Action {
    Action {
        action_specifier: Some(action::ActionSpecifier::HeaderValueMatch(action::HeaderValueMatch {
            descriptor_key: key.to_owned(),
            descriptor_value: value.to_owned(),
            expect_match: Some(BoolValue { value: expect_match }),
            headers: vec![HeaderMatcher { name: header.to_owned(), header_match_specifier: Some(specifier), ..Default::default() }],
            ..Default::default()
        })),
    }
}

fn header_action(header: &str, key: &str, skip_if_absent: bool) -> Action {
    Action {
        action_specifier: Some(action::ActionSpecifier::RequestHeaders(action::RequestHeaders {
            header_name: header.to_owned(),
            descriptor_key: key.to_owned(),
            skip_if_absent,
        })),
    }
}

fn regex(pattern: &str) -> header_matcher::HeaderMatchSpecifier {
    header_matcher::HeaderMatchSpecifier::StringMatch(StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::SafeRegex(RegexMatcher { regex: pattern.to_owned(), ..Default::default() })),
        ignore_case: false,
    })
}

fn exact(value: &str) -> header_matcher::HeaderMatchSpecifier {
    header_matcher::HeaderMatchSpecifier::StringMatch(StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::Exact(value.to_owned())),
        ignore_case: false,
    })
}

/// RE2 takes a backslash before any ASCII punctuation; before a letter or a non-ASCII
/// character it may mean something else or be refused, so those go as they are.
fn regex_escape(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_ascii_punctuation() { vec!['\\', c] } else { vec![c] }).collect()
}

/// The limit's burst at once, refilled at requests per period (Envoy refills continuously,
/// so between refusals this admits what GCRA's emission interval does).
fn bucket(max_tokens: u32, tokens_per_fill: u32, fill_interval_ms: u64) -> TokenBucket {
    TokenBucket { max_tokens, tokens_per_fill: Some(UInt32Value { value: tokens_per_fill }), fill_interval: Some(millis(fill_interval_ms)) }
}
