//! Registries and tokens the end-to-end tests share.

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

pub const SECRET: &str = "e2e-test-secret-e2e-test-secret-0123456";
pub const IDENTITY_KEY: &str = "e2e-identity-key-e2e-identity-key-0123";

pub fn auth_yaml() -> String {
    format!(
        "auth:
  issuer: tickettoken
  audience: tickettoken-platform
  keys:
    - algorithms: [HS256]
      secret: {SECRET}
      dev: true
identity:
  signing_key: {IDENTITY_KEY}
"
    )
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// The claims of a good access token; `patch` overrides (null removes).
pub fn claims(patch: Value) -> Value {
    let now = now();
    let mut claims = json!({
        "sub": "u1", "iss": "tickettoken", "aud": "tickettoken-platform", "type": "access",
        "tenant_id": "t1", "role": "venue-manager", "venues": ["v1", "v2"],
        "iat": now, "exp": now + 900,
    });
    for (k, v) in patch.as_object().cloned().unwrap_or_default() {
        if v.is_null() {
            claims.as_object_mut().map(|c| c.remove(&k));
        } else {
            claims[k] = v;
        }
    }
    claims
}

/// A token signed with the test secret.
pub fn token(patch: Value) -> String {
    token_with_secret(patch, SECRET)
}

pub fn token_with_secret(patch: Value, secret: &str) -> String {
    encode(&Header::default(), &claims(patch), &EncodingKey::from_secret(secret.as_bytes())).expect("sign")
}

pub fn bearer(patch: Value) -> String {
    format!("Bearer {}", token(patch))
}

/// The venue service every e2e registry has, its instance rewritten to an echo upstream.
pub const VENUE_SERVICE: &str = "  - name: venue\n    routes: [{ prefix: /api/v1/venues }]\n    instances: [{ address: 127.0.0.1, port: 1 }]\n";

/// A registry: the test auth section, the venue service, then `more_services` (YAML list
/// items, indented like `VENUE_SERVICE`).
pub fn registry_with(more_services: &str) -> String {
    format!("{}services:\n{VENUE_SERVICE}{more_services}", auth_yaml())
}

/// venue and plain, one (unreachable) instance each: the registry the NACK tests edit
/// (ledger_delta.rs, quarantine.rs), one service refused on a node while the other goes on.
pub fn venue_and_plain_yaml() -> String {
    auth_yaml()
        + r#"
services:
  - name: venue
    routes: [{ prefix: /api/v1/venues }]
    instances: [{ address: 127.0.0.1, port: 1 }]
  - name: plain
    routes: [{ prefix: /api/v1/plain }]
    instances: [{ address: 127.0.0.1, port: 1 }]
"#
}
