//! Harness for end-to-end tests: starts the real control plane, a real Envoy and echo
//! upstreams on free loopback ports in a private directory, and kills exactly those
//! processes when dropped; and a headless Chromium for the pages a person sees.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod browser;
pub mod fixtures;
pub mod ports;
pub mod published;
pub mod raw;
pub mod redis;
pub mod sentinel;
pub mod stack;
pub mod status_cli;

pub use stack::{Stack, StackOptions};
