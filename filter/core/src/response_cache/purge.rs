//! Purges, as they travel in the revocation feed: a purge is a feed entry whose key starts
//! with [`PURGE_PREFIX`], so it reaches every filter as fast as a revocation does (the long
//! poll), from every control plane (Redis), with no second feed to keep.

/// Starts every purge key. The space keeps it apart from any bare jti the control plane
/// accepts (printable, no spaces).
pub const PURGE_PREFIX: &str = "cache-purge ";

/// What a purge drops: the entries that match every field given (at least one is).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Purge {
    pub route: Option<String>,
    pub tenant: Option<String>,
    pub surrogate_key: Option<String>,
}

/// Why a purge was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PurgeError {
    #[error("give a route, a tenant or a surrogate key: there is no purge of everything")]
    Everything,
    #[error("{0}: at most 256 letters, digits and -_.:@~")]
    NotPlain(&'static str),
}

fn plain(value: &str) -> bool {
    value.len() <= 256 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:@~".contains(&b))
}

impl Purge {
    pub fn new(route: &str, tenant: &str, surrogate_key: &str) -> Result<Self, PurgeError> {
        let field = |value: &str, name: &'static str| match value {
            "" => Ok(None),
            v if plain(v) => Ok(Some(v.to_owned())),
            _ => Err(PurgeError::NotPlain(name)),
        };
        let purge = Self { route: field(route, "route")?, tenant: field(tenant, "tenant")?, surrogate_key: field(surrogate_key, "surrogate_key")? };
        if purge == Self::default() {
            return Err(PurgeError::Everything);
        }
        Ok(purge)
    }

    /// `cache-purge route=venue tenant=t1`: the feed key.
    pub fn key(&self) -> String {
        let mut key = String::from(PURGE_PREFIX.trim_end());
        for (name, value) in [("route", &self.route), ("tenant", &self.tenant), ("surrogate", &self.surrogate_key)] {
            if let Some(value) = value {
                key.push_str(&format!(" {name}={value}"));
            }
        }
        key
    }

    /// The purge a feed key carries; `None` for a revocation (or a key this build does not
    /// read, which then purges nothing rather than everything).
    pub fn from_key(key: &str) -> Option<Self> {
        let rest = key.strip_prefix(PURGE_PREFIX)?;
        let mut purge = Self::default();
        for part in rest.split(' ') {
            let (name, value) = part.split_once('=')?;
            let slot = match name {
                "route" => &mut purge.route,
                "tenant" => &mut purge.tenant,
                "surrogate" => &mut purge.surrogate_key,
                _ => return None,
            };
            *slot = Some(value.to_owned());
        }
        (purge != Self::default()).then_some(purge)
    }

    /// Does an entry of `route` for `tenant`, tagged `surrogates`, go?
    pub fn matches(&self, route: &str, tenant: &str, surrogates: &[String]) -> bool {
        self.route.as_deref().is_none_or(|r| r == route)
            && self.tenant.as_deref().is_none_or(|t| t == tenant)
            && self.surrogate_key.as_deref().is_none_or(|s| surrogates.iter().any(|k| k == s))
    }
}
