use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

fn source() -> JwksSource {
    JwksSource {
        issuer: "https://idp.example/".into(),
        uri: "https://idp.example/jwks".into(),
        algorithms: vec!["RS256".into(), "ES256".into()],
        refresh: Duration::from_secs(300),
        ca_pem: None,
    }
}

fn document(keys: &[usize], etag: &str) -> Fetched {
    let jwks: serde_json::Value = serde_json::from_str(include_str!("../../../filter/core/testdata/jwks.json")).unwrap();
    let keys: Vec<_> = keys.iter().map(|i| jwks["keys"][*i].clone()).collect();
    Fetched::Document { body: json!({ "keys": keys }).to_string().into_bytes(), etag: Some(etag.into()), cache_control: Some("max-age=60".into()) }
}

fn fetched(state: &mut IssuerState, kind: FetchKind, result: Result<Fetched, FetchError>, now: Instant) -> FetchOutcome {
    state.start(kind, now);
    let outcome = state.finish(result, now, 1_000);
    if let FetchOutcome::Changed { set, etag } = outcome.clone() {
        state.accept(set, etag);
    }
    outcome
}

#[test]
fn the_first_fetch_is_due_at_once_and_its_keys_are_published() {
    let t0 = Instant::now();
    let mut s = IssuerState::new(source(), t0);
    assert_eq!(s.due(t0), Some(FetchKind::Refresh));
    assert_eq!(s.etag(), None);
    assert!(matches!(fetched(&mut s, FetchKind::Refresh, Ok(document(&[0], "\"v1\"")), t0), FetchOutcome::Changed { .. }));
    assert_eq!(s.etag(), Some("\"v1\""));
    assert_eq!(s.due(t0), None);
    assert_eq!(s.wake_at(t0), Some(t0 + Duration::from_secs(60)), "the provider's max-age");
}

#[test]
fn the_same_document_or_a_304_changes_nothing() {
    let t0 = Instant::now();
    let mut s = IssuerState::new(source(), t0);
    fetched(&mut s, FetchKind::Refresh, Ok(document(&[0], "\"v1\"")), t0);
    assert_eq!(fetched(&mut s, FetchKind::Refresh, Ok(document(&[0], "\"v2\"")), t0), FetchOutcome::Unchanged);
    assert_eq!(s.etag(), Some("\"v2\""));
    let not_modified = Fetched::NotModified { cache_control: None };
    assert_eq!(fetched(&mut s, FetchKind::Refresh, Ok(not_modified), t0), FetchOutcome::Unchanged);
    assert_eq!(s.wake_at(t0), Some(t0 + Duration::from_secs(300)), "no header: refresh_secs");
}

#[test]
fn an_error_keeps_the_last_good_keys_and_retries_soon() {
    let t0 = Instant::now();
    let mut s = IssuerState::new(source(), t0);
    fetched(&mut s, FetchKind::Refresh, Ok(document(&[0, 1], "\"v1\"")), t0);
    let outcome = fetched(&mut s, FetchKind::Refresh, Err(FetchError::Request("connection refused".into())), t0);
    assert_eq!(outcome, FetchOutcome::Unchanged);
    assert_eq!(s.keys.as_ref().unwrap().keys.len(), 2, "last good keys kept");
    let bad = Fetched::Document { body: b"<html>".to_vec(), etag: None, cache_control: None };
    assert_eq!(fetched(&mut s, FetchKind::Refresh, Ok(bad), t0), FetchOutcome::Unchanged, "an invalid document too");
    assert_eq!(s.wake_at(t0), Some(t0 + Duration::from_secs(2)), "second failure in a row");
    let status = super::super::with_ages(s.status(t0, 1_000), 3_000);
    assert_eq!(status["kids"], json!(["ec-1", "rsa-1"]));
    assert!(status["last_error"].as_str().unwrap().contains("not JSON"), "{status}");
    assert_eq!(status["last_error_age_ms"], json!(2_000), "read later than written: aged");
    assert_eq!(status["next_refresh_in_ms"], json!(0), "due: 2 s after it was written, read 2 s later");
}

#[test]
fn a_rotated_kid_is_looked_for_once_and_a_missing_one_then_costs_nothing() {
    let t0 = Instant::now();
    let mut s = IssuerState::new(source(), t0);
    fetched(&mut s, FetchKind::Refresh, Ok(document(&[0], "\"v1\"")), t0);
    assert_eq!(s.report("rsa-1", t0), OnReport::Nothing, "known: its push is on the way");
    assert_eq!(s.report("ec-1", t0), OnReport::FetchNow);
    assert_eq!(s.due(t0), Some(FetchKind::Refetch));
    assert!(matches!(fetched(&mut s, FetchKind::Refetch, Ok(document(&[0, 1], "\"v2\"")), t0), FetchOutcome::Changed { .. }));
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(s.report("random", t1), OnReport::FetchAt(t0 + super::super::limiter::REFETCH_INTERVAL));
    let t2 = t0 + super::super::limiter::REFETCH_INTERVAL;
    assert_eq!(s.due(t2), Some(FetchKind::Refetch));
    fetched(&mut s, FetchKind::Refetch, Ok(Fetched::NotModified { cache_control: None }), t2);
    assert_eq!(s.report("random", t2 + Duration::from_secs(100)), OnReport::Nothing, "absent for the refresh interval");
    assert_eq!(s.status(t2, 1_000)["refetches"], json!(2));
}
