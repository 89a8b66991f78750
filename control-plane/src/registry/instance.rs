//! Where a service instance (or the token endpoint) is reached: the one address shape the
//! registry, the live instances and the translator share.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    /// An IP address or a DNS name.
    pub address: String,
    pub port: u16,
}

/// An IP address or a DNS name (labels of letters, digits and `-`, at most 253 bytes).
pub(super) fn is_host(address: &str) -> bool {
    address.parse::<std::net::IpAddr>().is_ok()
        || (!address.is_empty()
            && address.len() <= 253
            && address.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            }))
}
