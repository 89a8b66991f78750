//! The caller's identity as upstreams receive it: exactly one of each identity header, from
//! the verified token only, and optionally a signed statement of them.

use std::cell::RefCell;
use std::rc::Rc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::RoleConfig;
use crate::defaults::IDENTITY_HEADERS;
use crate::fast_bytes::bytes_eq;
use crate::token::{TokenError, VerifiedToken};

/// A set of identity header names ([`IDENTITY_HEADERS`], one bit each): which ones a client
/// sent, which ones the gateway sets. Empty for almost every request, and then free.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdentityHeaderSet(u8);

const _: () = assert!(IDENTITY_HEADERS.len() <= 8, "IdentityHeaderSet holds one bit per identity header");

impl IdentityHeaderSet {
    fn bit(name: &str) -> u8 {
        IDENTITY_HEADERS.iter().position(|h| bytes_eq(h.as_bytes(), name.as_bytes())).map_or(0, |i| 1 << i)
    }

    /// The set of `name` alone (empty if it is not an identity header).
    pub fn of(name: &str) -> Self {
        Self(Self::bit(name))
    }

    /// Adds `name` if it is an identity header (others are ignored).
    pub fn insert(&mut self, name: &str) {
        self.0 |= Self::bit(name);
    }

    /// Adds every name of `other`.
    pub fn add(&mut self, other: Self) {
        self.0 |= other.0;
    }

    pub fn contains(self, name: &str) -> bool {
        self.0 != 0 && self.0 & Self::bit(name) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    #[cfg(test)]
    fn all() -> Self {
        let mut set = Self::default();
        for name in IDENTITY_HEADERS {
            set.insert(name);
        }
        set
    }

    /// The names in the set that are not in `other` (static names, so any lifetime).
    pub fn without<'a>(self, other: Self) -> impl Iterator<Item = &'a str> {
        let rest = self.0 & !other.0;
        IDENTITY_HEADERS.iter().enumerate().filter(move |(i, _)| rest & (1 << i) != 0).map(|(_, h)| -> &'a str { h })
    }
}

/// A verified token resolved against the roles table, ready to become headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub token: VerifiedToken,
    pub role: String,
    pub permissions: Vec<String>,
    /// The role's `shadow_permissions`, when it has them and the token carries no
    /// `permissions` claim (which replaces the role's set in both decisions).
    pub shadow_permissions: Option<Vec<String>>,
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
        let shadow_permissions = role_config.shadow_permissions.clone().filter(|_| token.permissions.is_none());
        Ok(Self {
            shadow_permissions,
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

    /// The names [`Identity::header_values`] sets.
    pub fn header_names(&self) -> IdentityHeaderSet {
        let mut set = IdentityHeaderSet::default();
        for (name, _) in self.header_values() {
            set.insert(name);
        }
        set
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

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(venues: Option<Vec<String>>) -> Identity {
        let token = VerifiedToken {
            subject: "u".into(),
            tenant: "t".into(),
            role: Some("venue-manager".into()),
            permissions: None,
            venues,
            exp: 10,
            nbf: None,
            revocation_key: "k".into(),
            family_revocation_key: None,
        };
        Identity::resolve(token, &crate::defaults::roles()).unwrap()
    }

    #[test]
    fn header_names_are_the_names_of_the_header_values() {
        for venues in [None, Some(vec!["v1".to_owned()])] {
            let id = identity(venues);
            let names = id.header_names();
            for header in IDENTITY_HEADERS {
                assert_eq!(names.contains(header), id.header_values().any(|(n, _)| n == *header), "{header}");
            }
            let missing: Vec<_> = IdentityHeaderSet::all().without(names).collect();
            assert_eq!(missing.contains(&"x-venue-ids"), id.venues_header.is_none());
        }
        assert!(!IdentityHeaderSet::default().contains("x-tenant-id"));
        assert!(!IdentityHeaderSet::all().contains("x-other"));
    }
}
