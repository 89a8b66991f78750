use serde_json::json;

use super::*;
use crate::config::RevocationConfig;
use crate::decision::tests::{bearer, config, token, Harness};
use crate::revocation::RevocationUpdate;

fn with_revocation() -> Harness {
    let mut config = config();
    config.revocation = Some(RevocationConfig {
        cluster: "cp".into(),
        authority: "cp".into(),
        path: "/revocations".into(),
        poll_interval_ms: 250,
        wait_ms: 0,
    });
    Harness::with(config)
}

fn synced(revoked: &[&str]) -> RevocationList {
    let mut list = RevocationList::default();
    list.apply(RevocationUpdate { cursor: 1, full: true, revoked: revoked.iter().map(|k| (*k).to_owned()).collect() });
    list
}

#[test]
fn only_authenticated_requests_wait_and_only_until_the_list_is_known() {
    let mut h = with_revocation();
    let auth: &'static str = Box::leak(bearer(&token(json!({"jti": "j9"}))).into_boxed_str());
    let authenticated = h.run("GET", "/api/v1/events/1", &[("authorization", auth)]);
    let public = h.run("POST", "/api/v1/auth/login", &[]);
    let refused = h.run("GET", "/api/v1/events/1", &[]);
    let unsynced = RevocationList::default();
    assert_eq!(awaiting_revocations(&h.policy, &unsynced, &authenticated.decision), Some(("j9", None)));
    assert_eq!(awaiting_revocations(&h.policy, &unsynced, &public.decision), None);
    assert_eq!(awaiting_revocations(&h.policy, &unsynced, &refused.decision), None);
    assert_eq!(awaiting_revocations(&h.policy, &synced(&[]), &authenticated.decision), None);
    let mut no_feed = Harness::new();
    let outcome = no_feed.run("GET", "/api/v1/events/1", &[("authorization", auth)]);
    assert_eq!(awaiting_revocations(&no_feed.policy, &unsynced, &outcome.decision), None, "no feed configured");
}

#[test]
fn the_list_releases_every_held_request_and_refuses_the_revoked_ones() {
    let mut held = HeldRequests::default();
    assert!(held.hold(1, ("ok", None), "r1", 0, false));
    assert!(held.hold(2, ("revoked", None), "r2", 0, false));
    assert!(held.hold(3, ("ok", None), "r3", 0, true));
    assert!(held.hold(4, ("ok", Some("family:f1")), "r4", 0, false));
    assert!(held.is_held(2));
    let released = held.release_all(&synced(&["revoked", "family:f1"]));
    assert_eq!(released[0], (1, Release::Continue));
    assert!(matches!(&released[1], (2, Release::Refuse(d, id)) if d.status == 401 && d.code == "TOKEN_REVOKED" && id == "r2"));
    assert_eq!(released[2], (3, Release::LeaveToBodyCheck));
    assert!(matches!(&released[3], (4, Release::Refuse(d, _)) if d.code == "TOKEN_REVOKED"), "its family is revoked");
    assert!(held.is_empty());
}

#[test]
fn a_list_that_never_comes_is_a_503_after_the_limit() {
    let mut held = HeldRequests::default();
    held.hold(1, ("k", None), "r1", 1_000, false);
    held.hold(2, ("k", None), "r2", 2_500, false);
    assert!(held.release_overdue(1_000 + HOLD_LIMIT_MS - 1).is_empty());
    let overdue = held.release_overdue(1_000 + HOLD_LIMIT_MS);
    assert!(matches!(&overdue[..], [(1, Release::Refuse(d, _))] if d.status == 503 && d.code == "REVOCATIONS_UNAVAILABLE"));
    assert!(held.is_held(2) && !held.is_held(1));
}

#[test]
fn holding_is_bounded_and_a_gone_request_is_forgotten() {
    let mut held = HeldRequests::default();
    for id in 0..MAX_HELD as u32 {
        assert!(held.hold(id, ("k", None), "r", 0, false));
    }
    assert!(!held.hold(9_999, ("k", None), "r", 0, false), "full");
    held.forget(0);
    assert!(!held.is_held(0) && held.len() == MAX_HELD - 1);
    assert!(held.body_checked(1));
    assert!(!held.body_checked(0), "not held any more: the body check lets it go itself");
}
