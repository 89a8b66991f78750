//! Policy data carried over from the original gateway (shared reference:
//! src/middleware/auth.middleware.ts RBAC_CONFIG, src/routes/authenticated-proxy.ts header
//! lists), in one place.

use std::collections::BTreeMap;

use crate::config::RoleConfig;

/// The six roles of the original's RBAC_CONFIG.
pub fn roles() -> BTreeMap<String, RoleConfig> {
    let role = |permissions: &[&str], venue_scoped: bool| RoleConfig {
        permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        venue_scoped,
        shadow_permissions: None,
    };
    BTreeMap::from([
        ("venue-owner".to_owned(), role(&["*"], true)),
        (
            "venue-manager".to_owned(),
            role(
                &[
                    "events:create", "events:update", "events:delete", "tickets:view", "tickets:validate",
                    "reports:view", "reports:export",
                ],
                true,
            ),
        ),
        (
            "box-office".to_owned(),
            role(&["tickets:sell", "tickets:view", "tickets:validate", "payments:process", "reports:daily"], true),
        ),
        ("door-staff".to_owned(), role(&["tickets:validate", "tickets:view"], true)),
        (
            "customer".to_owned(),
            role(&["tickets:purchase", "tickets:view-own", "tickets:transfer-own", "profile:update-own"], false),
        ),
        ("admin".to_owned(), role(&["*"], false)),
    ])
}

/// Identity headers: only the gateway sets them, from the verified token.
pub const IDENTITY_HEADERS: &[&str] = &[
    "x-tenant-id",
    "x-tenant-source",
    "x-user-id",
    "x-user-role",
    "x-user-permissions",
    "x-venue-ids",
    "x-stagedoor-identity",
];

/// Never forwarded from a client, in either direction where they apply: the original's
/// BLOCKED_HEADERS without the framing and hop-by-hop headers Envoy's codec owns (host,
/// content-length, transfer-encoding, connection, keep-alive, upgrade, te, expect,
/// x-forwarded-proto), plus method and URL override headers.
pub const BLOCKED_HEADERS: &[&str] = &[
    "x-internal-service",
    "x-internal-signature",
    "x-internal-key",
    "x-admin-token",
    "x-privileged",
    "x-forwarded-host",
    "x-real-ip",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    // Set by the gateway (route config) from what Envoy saw, never by a client.
    "x-original-ip",
    "x-gateway-forwarded",
];

/// Every header starting with this is internal and blocked.
pub const INTERNAL_PREFIX: &str = "x-internal-";

/// The original's ALLOWED_HEADERS plus x-custom-*, and x-venue-id (the venue a request acts
/// on, which backends read).
pub const ALLOWED_HEADERS: &[&str] = &[
    "accept",
    "accept-language",
    "accept-encoding",
    "authorization",
    "content-type",
    "user-agent",
    "referer",
    "origin",
    "x-request-id",
    "x-correlation-id",
    "x-api-key",
    "idempotency-key",
    "x-venue-id",
    "x-custom-*",
];

/// Headers Envoy manages itself: the policy neither removes nor needs to allow them.
pub const ENVOY_MANAGED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "expect",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-envoy-external-address",
    "x-envoy-internal",
];
