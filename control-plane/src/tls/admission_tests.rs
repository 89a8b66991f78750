use proptest::prelude::*;

use super::*;

fn limits(per_second: u32, in_flight: usize, queue: usize) -> AdmissionLimits {
    AdmissionLimits::new(per_second, in_flight, queue).unwrap()
}

#[test]
fn off_starts_everything_at_once() {
    let mut admission = Admission::new(AdmissionLimits::OFF);
    assert!(AdmissionLimits::OFF.is_off());
    for i in 0..10_000 {
        assert_eq!(admission.arrive(i, 0), Arrival::Start(i));
    }
    assert_eq!(admission.wake_in_ms(0), None);
}

#[test]
fn a_storm_gets_the_burst_then_the_rate_newest_first() {
    let mut admission = Admission::new(limits(10, 0, 100));
    let started: Vec<_> = (0..50)
        .filter_map(|i| match admission.arrive(i, 0) {
            Arrival::Start(i) => Some(i),
            _ => None,
        })
        .collect();
    assert_eq!(started, (0..10).collect::<Vec<_>>(), "the burst");
    assert_eq!(admission.waiting(), 40);
    assert_eq!(admission.wake_in_ms(0), Some(100), "one a tenth of a second");
    let mut gone = 0;
    assert_eq!(admission.next(99, |_| true, &mut gone), None);
    assert_eq!(admission.next(100, |_| true, &mut gone), Some(49), "the newest waiting: the most likely still there");
    assert_eq!(admission.next(100, |_| true, &mut gone), None);
    // An operator's call arriving in the storm goes next, not behind the 39 still waiting.
    assert_eq!(admission.arrive(1_000, 150), Arrival::Queued);
    assert_eq!(admission.next(200, |_| true, &mut gone), Some(1_000));
}

#[test]
fn a_full_queue_closes_its_oldest_and_gone_clients_free_their_place() {
    let mut admission = Admission::new(limits(1, 1, 3));
    assert_eq!(admission.arrive(0, 0), Arrival::Start(0));
    for i in 1..=3 {
        assert_eq!(admission.arrive(i, 0), Arrival::Queued);
    }
    assert!(admission.is_full());
    assert_eq!(admission.arrive(4, 0), Arrival::QueuedClosingOldest(1));
    assert_eq!(admission.drop_gone(|&c| c != 3), 1);
    assert_eq!(admission.arrive(5, 0), Arrival::Queued);
    let mut no_queue = Admission::new(limits(1, 0, 0));
    assert_eq!(no_queue.arrive(0, 0), Arrival::Start(0));
    assert_eq!(no_queue.arrive(1, 0), Arrival::Closed(1));
}

#[test]
fn the_in_flight_bound_holds_until_a_handshake_ends() {
    let mut admission = Admission::new(limits(0, 2, 10));
    assert!(matches!(admission.arrive(0, 0), Arrival::Start(0)));
    assert!(matches!(admission.arrive(1, 0), Arrival::Start(1)));
    assert_eq!(admission.arrive(2, 0), Arrival::Queued);
    assert_eq!(admission.wake_in_ms(0), None, "nothing to do until a slot frees");
    let mut gone = 0;
    assert_eq!(admission.next(0, |_| true, &mut gone), None);
    admission.finished();
    assert_eq!(admission.wake_in_ms(0), Some(0));
    assert_eq!(admission.next(0, |_| true, &mut gone), Some(2));
}

#[test]
fn a_client_gone_while_waiting_takes_no_token_and_no_slot() {
    let mut admission = Admission::new(limits(1, 1, 10));
    assert!(matches!(admission.arrive(0, 0), Arrival::Start(0)));
    for i in 1..=4 {
        admission.arrive(i, 0);
    }
    admission.finished();
    let mut gone = 0;
    assert_eq!(admission.next(1_000, |&c| c <= 2, &mut gone), Some(2), "4 and 3 left: skipped, 2 starts");
    assert_eq!(gone, 2);
    assert_eq!(admission.in_flight(), 1);
}

#[test]
fn an_oversized_queue_is_refused_naming_the_flag() {
    let error = AdmissionLimits::new(100, 16, QUEUE_LIMIT + 1).unwrap_err();
    assert!(error.to_string().starts_with("--xds-accept-queue 65537"), "{error}");
}

#[derive(Debug, Clone)]
enum Op {
    Arrive,
    Finish,
    Tick(u64),
    Leave(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![4 => Just(Op::Arrive), 2 => Just(Op::Finish), 2 => (0u64..300).prop_map(Op::Tick), 1 => (0usize..8).prop_map(Op::Leave)]
}

proptest! {
    /// Whatever arrives, ends and leaves: never more handshakes in flight than the bound,
    /// never more started in any window than the rate allows (burst + rate x time), never
    /// more waiting than the queue, a waiting one started only when nothing newer waits,
    /// and nothing lost (every connection is started, closed for a full queue, dropped as
    /// gone, or still waiting).
    #[test]
    fn the_limits_hold_and_order_is_kept(per_second in 1u32..50, in_flight in 1usize..6, queue in 0usize..20, ops in prop::collection::vec(op(), 1..300)) {
        let mut admission = Admission::new(limits(per_second, in_flight, queue));
        let (mut now, mut next_id, mut running) = (0u64, 0u32, 0usize);
        let mut started: Vec<(u32, u64)> = Vec::new();
        let (mut closed, mut gone) = (0usize, 0usize);
        let mut left = std::collections::BTreeSet::new();
        let mut waiting = std::collections::BTreeSet::new();
        for op in ops {
            match op {
                Op::Arrive => {
                    match admission.arrive(next_id, now) {
                        Arrival::Start(id) => { started.push((id, now)); running += 1; }
                        Arrival::Queued => { waiting.insert(next_id); }
                        Arrival::QueuedClosingOldest(oldest) => {
                            prop_assert!(waiting.iter().all(|w| *w >= oldest || left.contains(w)), "the oldest is closed: {oldest} of {waiting:?}");
                            waiting.remove(&oldest);
                            waiting.insert(next_id);
                            closed += 1;
                        }
                        Arrival::Closed(_) => closed += 1,
                    }
                    next_id += 1;
                }
                Op::Finish => if running > 0 { running -= 1; admission.finished(); },
                Op::Tick(ms) => now += ms,
                Op::Leave(k) => { left.insert(next_id.saturating_sub(k as u32 + 1)); }
            }
            while let Some(id) = admission.next(now, |id| !left.contains(id), &mut gone) {
                waiting.remove(&id);
                prop_assert!(waiting.iter().all(|w| *w < id || left.contains(w)), "newest first: {id} started while {waiting:?} wait");
                started.push((id, now));
                running += 1;
            }
            prop_assert!(admission.in_flight() <= in_flight);
            prop_assert_eq!(admission.in_flight(), running);
            prop_assert!(admission.waiting() <= queue);
        }
        prop_assert_eq!(started.len() + closed + gone + admission.waiting(), next_id as usize);
        for (i, (_, from)) in started.iter().enumerate() {
            let within = started[i..].iter().filter(|(_, at)| at - from < 1000).count();
            prop_assert!(within <= 2 * per_second as usize, "{within} started within a second of {from} at {per_second}/s");
        }
    }
}
