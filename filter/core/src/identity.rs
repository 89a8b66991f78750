//! The caller's identity as upstreams receive it: exactly one of each identity header, from
//! the verified token only, and optionally a signed statement of them.

use std::cell::RefCell;
use std::rc::Rc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::RoleConfig;
use crate::token::{TokenError, VerifiedToken};

/// A verified token resolved against the roles table, ready to become headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub token: VerifiedToken,
    pub role: String,
    pub permissions: Vec<String>,
    pub venue_scoped: bool,
    /// `x-user-permissions` and `x-venue-ids`, joined once.
    pub permissions_header: String,
    pub venues_header: Option<String>,
    /// The last signed statement and its `ts`, reused while fresh so the hot path does
    /// not compute an HMAC per request.
    statement: RefCell<Option<(i64, Rc<str>)>>,
}

/// How long a signed statement is reused; its `ts` is at most this old when sent.
pub const STATEMENT_REUSE_SECS: i64 = 10;

/// Tokens without a `role` act as customers, as the original gateway's default user did.
pub const DEFAULT_ROLE: &str = "customer";

impl Identity {
    pub fn resolve(
        token: VerifiedToken,
        roles: &std::collections::BTreeMap<String, RoleConfig>,
    ) -> Result<Self, TokenError> {
        let role = token.role.clone().unwrap_or_else(|| DEFAULT_ROLE.to_owned());
        let role_config = roles.get(&role).ok_or(TokenError::UnknownRole)?;
        let permissions = token.permissions.clone().unwrap_or_else(|| role_config.permissions.clone());
        Ok(Self {
            permissions_header: permissions.join(","),
            venues_header: token.venues.as_ref().map(|v| v.join(",")),
            permissions,
            venue_scoped: role_config.venue_scoped,
            role,
            token,
            statement: RefCell::new(None),
        })
    }

    /// The header values to set (each replaces every client copy), borrowed.
    pub fn header_values(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("x-tenant-id", self.token.tenant.as_str()),
            ("x-tenant-source", "jwt"),
            ("x-user-id", self.token.subject.as_str()),
            ("x-user-role", self.role.as_str()),
            ("x-user-permissions", self.permissions_header.as_str()),
        ]
        .into_iter()
        .chain(self.venues_header.as_deref().map(|v| ("x-venue-ids", v)))
    }

    /// `x-stagedoor-identity`: `v1.<base64url(JSON)>.<base64url(HMAC-SHA256)>`, the MAC over
    /// `v1.<base64url(JSON)>`. The JSON holds the identity header values and `ts`, the unix
    /// time the gateway vouched for them. Backends verify the MAC and bound `ts`.
    pub fn signed_statement(&self, key: &[u8], now: i64) -> Rc<str> {
        if let Some((ts, statement)) = &*self.statement.borrow() {
            if (0..STATEMENT_REUSE_SECS).contains(&(now - ts)) {
                return statement.clone();
            }
        }
        let signed: Rc<str> = self.sign_statement(key, now).into();
        *self.statement.borrow_mut() = Some((now, signed.clone()));
        signed
    }

    fn sign_statement(&self, key: &[u8], now: i64) -> String {
        let statement = serde_json::json!({
            "tenant_id": self.token.tenant,
            "tenant_source": "jwt",
            "user_id": self.token.subject,
            "role": self.role,
            "permissions": self.permissions,
            "venues": self.token.venues,
            "ts": now,
        });
        let body = format!("v1.{}", URL_SAFE_NO_PAD.encode(statement.to_string()));
        sign(key, &body)
    }
}

fn sign(key: &[u8], body: &str) -> String {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(body.as_bytes());
            format!("{body}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
        }
        // HMAC takes keys of any length; this arm is unreachable, and an unsigned
        // statement would fail every backend's check rather than pass one.
        Err(_) => format!("{body}.invalid"),
    }
}

/// What a backend does with `x-stagedoor-identity`: checks the MAC and returns the JSON.
pub fn verify_statement(key: &[u8], header: &str) -> Option<serde_json::Value> {
    let (body, mac) = header.rsplit_once('.')?;
    let mut hmac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    hmac.update(body.as_bytes());
    hmac.verify_slice(&URL_SAFE_NO_PAD.decode(mac).ok()?).ok()?;
    let json = URL_SAFE_NO_PAD.decode(body.strip_prefix("v1.")?).ok()?;
    serde_json::from_slice(&json).ok()
}
