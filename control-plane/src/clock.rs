//! Wall-clock time for timestamps, versions and expiry checks (a leaf module: TLS, the
//! registry, discovery and xDS status all read it).

use std::time::SystemTime;

/// Milliseconds since the Unix epoch; 0 for a clock set before 1970.
pub fn unix_ms() -> u128 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}
