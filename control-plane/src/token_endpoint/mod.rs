//! The token endpoint (issue 12): refresh-token rotation with reuse detection, and logout,
//! answered by `stagedoor serve --token-endpoint` behind Envoy.
//!
//! - [`claims`]: refresh tokens (their own key, `type: refresh`, audience `<aud>:refresh`)
//!   and the access tokens a refresh mints (carrying `fid`), pure;
//! - [`rotate`]: the one atomic Redis script that rotates, replays within the grace, or
//!   revokes the family;
//! - [`http`] and [`logout`]: the two POST routes, in the gateway's JSON error shape, and
//!   [`preflight`]: what both check first and the refusals they share;
//! - [`store`]: the Redis connection.

pub mod claims;
pub mod http;
pub mod logout;
pub mod preflight;
pub mod rotate;
pub mod store;

#[cfg(test)]
mod tests;
