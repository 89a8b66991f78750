//! The keys fetched from the registry's JWKS URLs (crate::jwks), merged into the registry
//! the filter config is built from. Here, below `publish`, so the publisher takes them
//! without depending on the fetcher that follows it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use stagedoor_filter_core::config::KeyConfig;

use super::Registry;

/// Issuer -> its keys, as last fetched and judged good.
pub type RemoteKeys = BTreeMap<String, Vec<KeyConfig>>;

/// The registry with each JWKS issuer's fetched keys after its own keys: what the filter
/// config is built from. Keys of an issuer the registry no longer names are left out.
pub fn with_remote_keys<'a>(registry: &'a Registry, remote: &RemoteKeys) -> Cow<'a, Registry> {
    let fetched: Vec<KeyConfig> = registry.jwks.iter().filter_map(|s| remote.get(&s.issuer)).flatten().cloned().collect();
    if fetched.is_empty() {
        return Cow::Borrowed(registry);
    }
    let mut merged = registry.clone();
    merged.keys.extend(fetched);
    Cow::Owned(merged)
}

