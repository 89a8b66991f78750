use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

const REMEMBER: Duration = Duration::from_secs(300);

fn kids(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|k| (*k).to_owned()).collect()
}

#[test]
fn the_first_unknown_kid_is_looked_for_at_once() {
    let mut l = RefetchLimiter::default();
    let t0 = Instant::now();
    assert_eq!(l.report("new", false, t0), OnReport::FetchNow);
    l.start(t0);
    l.found(&kids(&["new"]), t0, REMEMBER);
    assert_eq!(l.report("new", true, t0), OnReport::Nothing, "found: known now");
}

#[test]
fn within_the_interval_kids_wait_for_one_fetch_at_its_end() {
    let mut l = RefetchLimiter::default();
    let t0 = Instant::now();
    assert_eq!(l.report("a", false, t0), OnReport::FetchNow);
    l.start(t0);
    l.found(&kids(&[]), t0, REMEMBER);
    let t1 = t0 + Duration::from_secs(5);
    assert_eq!(l.report("b", false, t1), OnReport::FetchAt(t0 + REFETCH_INTERVAL));
    assert_eq!(l.report("c", false, t1), OnReport::Nothing, "already due");
    assert_eq!(l.due(t1), Some(t0 + REFETCH_INTERVAL));
    let t2 = t0 + REFETCH_INTERVAL;
    l.start(t2);
    assert_eq!(l.due(t2), None, "nothing waits during the fetch");
    assert_eq!(l.report("b", false, t2), OnReport::Nothing, "being looked for");
}

#[test]
fn a_kid_absent_after_the_fetch_costs_nothing_for_the_refresh_interval() {
    let mut l = RefetchLimiter::default();
    let t0 = Instant::now();
    l.report("ghost", false, t0);
    l.start(t0);
    l.found(&kids(&["real"]), t0, REMEMBER);
    let later = t0 + REFETCH_INTERVAL * 2;
    assert_eq!(l.report("ghost", false, later), OnReport::Nothing);
    assert_eq!(l.report("ghost", false, t0 + REMEMBER + Duration::from_secs(1)), OnReport::FetchNow, "forgotten after the interval");
}

#[test]
fn a_failed_fetch_keeps_its_kids_waiting() {
    let mut l = RefetchLimiter::default();
    let t0 = Instant::now();
    l.report("k", false, t0);
    l.start(t0);
    l.failed();
    assert_eq!(l.due(t0), Some(t0 + REFETCH_INTERVAL));
}

proptest! {
    /// Whatever kids are reported when, fetches are at least the interval apart and
    /// the limiter's memory stays bounded.
    #[test]
    fn fetches_are_at_least_the_interval_apart(reports in prop::collection::vec((0u32..5000, 0u64..120_000), 1..400)) {
        let mut l = RefetchLimiter::default();
        let t0 = Instant::now();
        let mut reports = reports;
        reports.sort_by_key(|(_, at)| *at);
        let mut fetches: Vec<Instant> = Vec::new();
        for (kid, at_ms) in reports {
            let now = t0 + Duration::from_millis(at_ms);
            // A fetch that came due before this report runs first (as the task's timer does).
            if let Some(due) = l.due(now).filter(|d| *d <= now) {
                l.start(due.max(fetches.last().copied().unwrap_or(due)));
                fetches.push(due);
                l.found(&BTreeSet::new(), now, REMEMBER);
            }
            if l.report(&kid.to_string(), false, now) == OnReport::FetchNow {
                l.start(now);
                fetches.push(now);
                l.found(&BTreeSet::new(), now, REMEMBER);
            }
        }
        for pair in fetches.windows(2) {
            prop_assert!(pair[1] >= pair[0] + REFETCH_INTERVAL, "{:?} then {:?}", pair[0], pair[1]);
        }
        prop_assert!(fetches.len() <= 1 + 120_000 / REFETCH_INTERVAL.as_millis() as usize);
        prop_assert!(l.absent_count() <= MAX_ABSENT_KIDS);
    }
}
