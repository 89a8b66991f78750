//! `stagedoor validate --envoy`: the snapshot a registry makes, run through Envoy's own
//! `envoy --mode validate`, so what Envoy would NACK is caught before the push and named
//! by its registry entry.
//!
//! Two pure steps and one adapter: [`static_bootstrap`] turns the snapshot into a static
//! bootstrap (every xDS reference inlined), [`reason`] and [`culprits`] read Envoy's refusal
//! and trace it to the registry through the origins map, and [`run`] is the process call.

mod bootstrap;
mod canonical;
pub mod published;
mod refusal;
mod run;

pub use bootstrap::{static_bootstrap, BootstrapError, Identity, Scope, RE2_MAX_PROGRAM_SIZE_ERROR_LEVEL};
pub use refusal::{culprits, reason, Culprit};
pub use run::{check, find_envoy, EnvoyCheckError, Refusal};

#[cfg(test)]
mod tests;
