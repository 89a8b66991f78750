//! Stagedoor's control plane as a library: the `stagedoor` binary (`main.rs`) parses the
//! command line and calls it; tests and benchmarks call it directly.
//!
//! The public API, in the order data flows through it:
//! - [`registry`]: the registry file as typed data and its own rules ([`registry::load`],
//!   [`registry::Registry`], [`registry::LiveInstances`]);
//! - [`translate`]: registry -> Envoy resources, pure and deterministic
//!   ([`translate::translate`], [`translate::check`] for the filter's own compiler);
//! - [`snapshot`] and [`publish`]: resources checked for consistency and versioned by
//!   content ([`publish::build_snapshot`], [`publish::Publisher`]); [`resources`] names
//!   the xDS types;
//! - [`xds`]: the SotW and delta protocols as pure state machines ([`xds::sotw`],
//!   [`xds::delta`]) and the tonic server that does their I/O;
//! - [`serve`]: `stagedoor serve`, everything wired together ([`serve::serve`] with
//!   [`serve_args::ServeArgs`]); [`commands`]: the other subcommands' bodies.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod api;
pub mod api_guard;
pub mod auth;
pub mod cert_status;
pub mod cert_watch;
pub mod client;
pub mod clock;
pub mod commands;
pub mod config_dump_diff;
pub mod consistency;
pub mod dashboard;
pub mod diff;
pub mod discovery;
pub mod envoy_check;
pub mod hash;
pub mod jwks;
pub mod metrics;
pub mod publish;
pub mod ratelimit;
pub mod registry;
pub mod registry_store;
pub mod resources;
pub mod revocation_wait;
pub mod revocations;
pub mod serve;
pub mod serve_args;
pub mod shadow_report;
pub mod shared_publisher;
pub mod shutdown;
pub mod snapshot;
pub mod status_http;
pub mod status_table;
pub mod supervise;
#[cfg(test)]
mod test_support;
pub mod tls;
pub mod token;
pub mod token_bucket;
pub mod token_endpoint;
pub mod translate;
pub mod watch;
pub mod xds;
