//! Stagedoor's request policy, free of proxy-wasm and I/O.
//!
//! The control plane builds a [`config::FilterConfig`], validates it by compiling it into a
//! [`policy::Policy`], and pushes its JSON to Envoy; the wasm filter parses and compiles the
//! same JSON in `on_configure` and asks [`decide`] what to do with each request.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod aggregate;
pub mod apply;
mod authorize;
pub mod cache;
pub mod clock;
pub mod config;
pub mod defaults;
pub mod fast_bytes;
pub mod feed_poll;
pub mod header_map;
pub mod headers;
pub mod hold;
pub mod identity;
pub mod key_reports;
pub mod rbac;
pub mod reply;
pub mod response_cache;
pub mod revocation;
pub mod schema;
pub mod shadow;
pub mod signature;
pub mod token;
pub mod validation;
pub mod webhook;
pub mod decision;
pub mod path;
pub mod policy;

pub use decision::{decide, decide_at, Decision, FilterState, Observed, Outcome, RequestView};
pub use policy::{CompileError, Policy};
