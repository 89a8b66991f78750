//! The service registry: the file the platform team applies, as typed data.
//!
//! `model` is the file's shape (serde, unknown fields refused); `validate` turns it into a
//! [`Registry`], the only form the translator accepts, or an error naming the file, the
//! service and the field.

pub mod edge;
mod global_rate_limit;
pub mod input;
pub mod instance;
pub mod jwks_source;
pub mod remote_keys;
pub mod limits;
pub mod live;
mod model;
pub mod signed;
pub mod token_endpoint;
pub mod traffic;
mod validate;

pub use live::LiveInstances;
pub use model::{CorsSpec, InstanceSpec, RateLimitSpec, ServiceSpec};
pub use validate::{Registry, RegistryError, Services, REDACTED};

use std::path::Path;

/// Reads, parses and validates a registry file.
pub fn load(path: &Path) -> Result<Registry, RegistryError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RegistryError::io(path, e))?;
    Registry::parse(&path.display().to_string(), &text)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod signed_tests;
