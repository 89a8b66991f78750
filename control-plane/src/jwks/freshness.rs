//! When to fetch a JWKS again: the provider's Cache-Control within our bounds, and a
//! backoff after failures. Pure functions of the response and the configured interval.

use std::time::Duration;

/// Never sooner than this by the timer, whatever the provider says (`max-age=0`,
/// `no-cache`): a provider's cache header must not make every control plane poll it.
pub const MIN_REFRESH: Duration = Duration::from_secs(crate::registry::jwks_source::MIN_REFRESH_SECS);

/// The first retry after a failed fetch; each failure doubles it, up to [`MAX_RETRY`].
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
pub const MAX_RETRY: Duration = Duration::from_secs(60);

/// After a good fetch: the provider's `max-age` honoured between [`MIN_REFRESH`] and the
/// registry's `refresh_secs` (a longer max-age would hide a removed key for that long);
/// without one, `refresh_secs`.
pub fn next_refresh(cache_control: Option<&str>, configured: Duration) -> Duration {
    let Some(header) = cache_control else { return configured };
    let mut max_age = None;
    for directive in header.split(',') {
        let directive = directive.trim().to_ascii_lowercase();
        if directive == "no-cache" || directive == "no-store" {
            return MIN_REFRESH.min(configured);
        }
        if let Some(secs) = directive.strip_prefix("max-age=") {
            max_age = secs.trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    match max_age {
        Some(age) => age.clamp(MIN_REFRESH.min(configured), configured),
        None => configured,
    }
}

/// After `failures` failed fetches in a row (1 or more): 1 s, 2 s, 4 s ... up to 60 s and
/// never past the configured interval. An issuer without keys refuses its tokens, so the
/// first retries come soon; a provider that is down is not hammered.
pub fn retry_after(failures: u32, configured: Duration) -> Duration {
    let doubled = FIRST_RETRY.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled.min(MAX_RETRY).min(configured)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE_MIN: Duration = Duration::from_secs(300);

    #[test]
    fn max_age_is_honoured_within_the_bounds() {
        assert_eq!(next_refresh(None, FIVE_MIN), FIVE_MIN, "no header: the registry's interval");
        assert_eq!(next_refresh(Some("public, max-age=120"), FIVE_MIN), Duration::from_secs(120));
        assert_eq!(next_refresh(Some("max-age=86400, must-revalidate"), FIVE_MIN), FIVE_MIN, "capped at refresh_secs");
        assert_eq!(next_refresh(Some("max-age=0"), FIVE_MIN), MIN_REFRESH, "floored");
        assert_eq!(next_refresh(Some("Max-Age=\"90\""), FIVE_MIN), Duration::from_secs(90), "case and quotes");
        assert_eq!(next_refresh(Some("no-cache"), FIVE_MIN), MIN_REFRESH);
        assert_eq!(next_refresh(Some("private, no-store, max-age=600"), FIVE_MIN), MIN_REFRESH);
        assert_eq!(next_refresh(Some("max-age=banana"), FIVE_MIN), FIVE_MIN, "unreadable: ignored");
    }

    #[test]
    fn retries_back_off_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|n| retry_after(n, FIVE_MIN).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_after(40, FIVE_MIN), MAX_RETRY, "no overflow");
        assert_eq!(retry_after(9, Duration::from_secs(30)), Duration::from_secs(30), "never past the interval");
    }
}
