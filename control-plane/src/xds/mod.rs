//! The xDS server: a pure per-stream protocol state machine (`sotw`), the record of which
//! Envoy runs which version (`status`), and the tonic service that does the I/O (`server`).

pub mod csds;
pub mod csds_server;
pub mod delta;
pub mod ledger;
pub mod ledger_proto;
pub mod metrics;
mod quarantine;
pub mod server;
pub mod sotw;
pub mod status;
pub mod step;
