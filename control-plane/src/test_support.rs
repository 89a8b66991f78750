//! Shared fixtures for unit tests.

/// A minimal `auth` section; registries in tests start with it.
pub const AUTH: &str = "auth:
  issuer: tickettoken
  audience: tickettoken-platform
  keys:
    - algorithms: [HS256]
      secret: unit-test-secret-unit-test-secret-0123
      dev: true
";

/// `AUTH` followed by the given `services:` section.
pub fn registry_yaml(services: &str) -> String {
    format!("{AUTH}{services}")
}
