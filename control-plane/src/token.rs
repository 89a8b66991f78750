//! `stagedoor token`: development tokens signed with the registry's dev key, and
//! revocation through a running control plane.

use std::time::Duration;

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

use crate::registry::Registry;

#[derive(Debug, Clone)]
pub struct MintRequest {
    pub sub: String,
    pub tenant: String,
    pub role: String,
    pub venues: Option<Vec<String>>,
    pub permissions: Option<Vec<String>>,
    pub ttl: Duration,
    pub token_type: String,
}

/// Signs a token the gateway accepts, with the registry's `dev: true` key.
pub fn mint(registry: &Registry, request: &MintRequest, now: i64) -> anyhow::Result<String> {
    let (kid, secret) = registry
        .dev_key()
        .ok_or_else(|| anyhow::anyhow!("the registry has no key marked `dev: true` to sign development tokens with"))?;
    let mut claims = json!({
        "sub": request.sub,
        "tenant_id": request.tenant,
        "role": request.role,
        "type": request.token_type,
        "iss": registry.auth.issuer,
        "aud": registry.auth.audience,
        "iat": now,
        "exp": now + i64::try_from(request.ttl.as_secs()).unwrap_or(i64::MAX / 2),
        "jti": new_jti(),
    });
    if let Some(venues) = &request.venues {
        claims["venues"] = json!(venues);
    }
    if let Some(permissions) = &request.permissions {
        claims["permissions"] = json!(permissions);
    }
    let header = Header { kid, ..Header::default() };
    Ok(encode(&header, &claims, &EncodingKey::from_secret(secret.as_bytes()))?)
}

/// A unique id (a token's jti, a refresh family's id); not a secret (the tokens that carry
/// it are signed), so time, process and a counter are enough.
pub fn new_jti() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    crate::hash::short_hash(format!("{nanos}-{}-{n}", std::process::id()).as_bytes())
}

/// The longest duration `parse_ttl` reads.
pub use crate::registry::token_endpoint::MAX_TTL;

/// `15m`, `1h`, `30s`, `2d`, or plain seconds, up to [`MAX_TTL`].
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let shown = crate::registry::input::bounded(text);
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number.parse().map_err(|_| format!("{shown:?} is not a duration like 15m, 1h, 30s"))?;
    let unit_secs: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{shown:?}: unit must be s, m, h or d")),
    };
    match n.checked_mul(unit_secs).map(Duration::from_secs) {
        Some(ttl) if ttl <= MAX_TTL => Ok(ttl),
        _ => Err(format!("{shown:?} is longer than the most allowed, {}d", MAX_TTL.as_secs() / 86_400)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_pass_the_filters_checks() {
        let registry = crate::test_support::shipped_registry("token-test");
        let request = MintRequest {
            sub: "u1".into(),
            tenant: "t1".into(),
            role: "venue-manager".into(),
            venues: Some(vec!["v1".into()]),
            permissions: None,
            ttl: parse_ttl("15m").unwrap(),
            token_type: "access".into(),
        };
        let now = 1_800_000_000;
        let token = mint(&registry, &request, now).unwrap();
        let policy = stagedoor_filter_core::Policy::compile(&crate::translate::filter_config(&registry, None)).unwrap();
        let verified = policy.verifier.verify(&token, now).unwrap();
        assert_eq!(verified.tenant, "t1");
        assert_eq!(verified.exp, now + 900);
        assert_eq!(verified.venues, Some(vec!["v1".to_owned()]));
    }

    #[test]
    fn ttls_parse() {
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_ttl("30"), Ok(Duration::from_secs(30)));
        assert!(parse_ttl("5y").is_err());
        assert!(parse_ttl("m").is_err());
    }

    #[test]
    fn large_ttls_are_refused_not_overflowed() {
        assert_eq!(parse_ttl("3650d"), Ok(MAX_TTL));
        assert!(parse_ttl("3651d").unwrap_err().contains("longer than the most allowed, 3650d"));
        assert!(parse_ttl("18446744073709551615d").is_err());
        assert!(parse_ttl("213503982334601d").is_err(), "n * 86400 overflows u64");
        assert!(parse_ttl(&"9".repeat(100_000)).unwrap_err().len() < 400, "the value is echoed bounded");
    }
}
