//! Envoy's RateLimitService (envoy.service.ratelimit.v3), served on its own port (`--ratelimit`)
//! with the same TLS as xDS: only Envoy certificates may ask. The decision is the ratelimit
//! crate's; this module only reads the request and writes the reply.

mod response;
mod server;
mod status;
mod service;

pub use server::{limiter, serve};
pub use service::RateLimitApi;
pub use status::status;
