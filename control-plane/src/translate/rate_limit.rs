//! Per-client rate limiting at the edge, as the original's rate limiter (a request budget per
//! client address per window), by Envoy's local rate limit filter with one token bucket per
//! client address. It runs before authentication, so a flood costs no token checks.

use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::config::route::v3::rate_limit::{action, Action};
use envoy_types::pb::envoy::config::route::v3::RateLimit;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    rate_limit_descriptor, LocalRateLimitDescriptor, XRateLimitHeadersRfcVersion,
};
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{http_filter, HttpFilter};
use envoy_types::pb::envoy::r#type::v3::{fractional_percent, FractionalPercent, TokenBucket};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};

use super::cluster::millis;
use super::to_any;
use crate::registry::RateLimitSpec;

pub fn filter(spec: &RateLimitSpec) -> HttpFilter {
    let bucket = |tokens: u32, interval_ms: u64| TokenBucket {
        max_tokens: tokens,
        tokens_per_fill: Some(UInt32Value { value: tokens }),
        fill_interval: Some(millis(interval_ms)),
    };
    let always = || RuntimeFractionalPercent {
        default_value: Some(FractionalPercent {
            numerator: 100,
            denominator: fractional_percent::DenominatorType::Hundred as i32,
        }),
        runtime_key: String::new(),
    };
    let config = LocalRateLimit {
        stat_prefix: String::from("stagedoor_rate_limit"),
        // The default bucket is not the limit (the per-address descriptor is); it only has
        // to exist, so it is as large as a bucket can be.
        token_bucket: Some(bucket(u32::MAX, 1000)),
        filter_enabled: Some(always()),
        filter_enforced: Some(always()),
        descriptors: vec![LocalRateLimitDescriptor {
            // No value: one bucket per distinct client address.
            entries: vec![rate_limit_descriptor::Entry { key: String::from("remote_address"), value: String::new() }],
            token_bucket: Some(bucket(spec.requests, spec.window_ms)),
            ..Default::default()
        }],
        rate_limits: vec![RateLimit {
            actions: vec![Action { action_specifier: Some(action::ActionSpecifier::RemoteAddress(action::RemoteAddress {})) }],
            ..Default::default()
        }],
        max_dynamic_descriptors: Some(UInt32Value { value: spec.max_clients }),
        enable_x_ratelimit_headers: XRateLimitHeadersRfcVersion::DraftVersion03 as i32,
        always_consume_default_token_bucket: Some(BoolValue { value: false }),
        ..Default::default()
    };
    HttpFilter {
        name: String::from("envoy.filters.http.local_ratelimit"),
        config_type: Some(http_filter::ConfigType::TypedConfig(to_any(&config))),
        ..Default::default()
    }
}
