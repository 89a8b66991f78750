//! Who may call the stagedoor.v1 API and the HTTP side, decided by pure functions: the
//! caller from its certificate or bearer token ([`authenticate`]), then per RPC
//! ([`authorize`]). The gRPC and HTTP adapters only read the credentials in and map a
//! refusal to its status.

pub mod audit;
mod policy;
pub mod tokens;

#[cfg(test)]
mod tests;

pub use policy::{authenticate, authorize, Action, Caller, Refusal};
pub use tokens::ApiTokens;
