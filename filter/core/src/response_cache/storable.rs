//! Which answers may be kept.

use super::route::CacheRoute;

/// A 200 with no `Set-Cookie`, no `Cache-Control` private, no-store or no-cache, and a
/// `Vary` (if any) naming only headers the route declared. `headers` lower-cased.
pub fn is_storable(route: &CacheRoute, status: u16, headers: &[(&str, &str)]) -> bool {
    if status != 200 {
        return false;
    }
    headers.iter().all(|(name, value)| match *name {
        "set-cookie" => false,
        "cache-control" => !value
            .split(',')
            .map(|d| d.trim().split('=').next().unwrap_or("").to_ascii_lowercase())
            .any(|d| matches!(d.as_str(), "private" | "no-store" | "no-cache")),
        "vary" => value.split(',').all(|h| route.declares_vary(h)),
        _ => true,
    })
}
