//! Global rate limiting for the Stagedoor gateway (issue 13): pure admission math, keys and
//! reply values (no I/O), and `store`, the one adapter, which runs the same decision in Redis
//! as one script call per request.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod compile;
pub mod config;
pub mod decide;
pub mod fail_mode;
pub mod gcra;
pub mod headers;
pub mod key;
pub mod limiter;
pub mod local;
pub mod metrics;
pub mod plan;
pub mod store;

#[cfg(test)]
mod compile_tests;
#[cfg(test)]
mod tests;
