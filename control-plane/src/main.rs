//! `stagedoor`: the control plane and its tools.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod api;
mod api_guard;
mod auth;
mod cert_watch;
mod cli;
mod client;
mod diff;
mod discovery;
mod echo;
mod hash;
mod metrics;
mod publish;
mod shared_publisher;
mod registry;
mod revocation_wait;
mod revocations;
mod scale;
mod serve;
mod shutdown;
mod snapshot;
mod status_http;
mod supervise;
#[cfg(test)]
mod test_support;
mod tls;
mod token;
mod translate;
mod watch;
mod xds;

fn main() -> std::process::ExitCode {
    cli::main()
}
