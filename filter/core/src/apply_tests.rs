use serde_json::json;

use super::*;
use crate::decision::tests::{bearer, token, Harness};

/// A host that records every call and fails the `fail_at`-th one (counting from 0).
#[derive(Default)]
struct RecordingHost {
    calls: Vec<String>,
    fail_at: Option<usize>,
}

impl RecordingHost {
    fn failing_at(n: usize) -> Self {
        Self { fail_at: Some(n), ..Self::default() }
    }

    fn record(&mut self, call: &'static str, what: String) -> Result<(), HostError> {
        let n = self.calls.len();
        self.calls.push(what);
        if self.fail_at == Some(n) { Err(HostError { call, status: 2 }) } else { Ok(()) }
    }

    fn replies(&self) -> Vec<&String> {
        self.calls.iter().filter(|c| c.starts_with("reply")).collect()
    }
}

impl RequestHost for RecordingHost {
    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        self.record("set", format!("set {name}={value:?}"))
    }

    fn add_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.record("add", format!("add {name}={value}"))
    }

    fn send_reply(&mut self, status: u16, _headers: &[(&str, &str)], body: &str) -> Result<(), HostError> {
        let code = serde_json::from_str::<serde_json::Value>(body).map(|b| b["code"].to_string()).unwrap_or_default();
        self.record("reply", format!("reply {status} {code}"))
    }
}

fn forwarded_request(h: &mut Harness) -> crate::decision::Outcome<'static> {
    let auth: &'static str = Box::leak(bearer(&token(json!({}))).into_boxed_str());
    h.run("GET", "/api/v1/events/1", &[("authorization", auth), ("x-tenant-id", "evil"), ("cookie", "c"), ("x-request-id", "a\"b")])
}

#[test]
fn a_forwarded_request_gets_its_removals_then_its_identity() {
    let mut h = Harness::new();
    let outcome = forwarded_request(&mut h);
    let mut host = RecordingHost::default();
    assert_eq!(apply(&mut host, &outcome, &|| 0), Next::Continue);
    assert_eq!(host.calls[..3], ["set x-request-id=Some(\"ab\")", "set cookie=None", "set x-tenant-id=Some(\"t1\")"]);
    assert!(host.calls.contains(&"add x-user-id=u1".to_owned()), "{:?}", host.calls);
    assert!(host.replies().is_empty());
    assert_eq!(apply(&mut RecordingHost::default(), &outcome, &|| panic!("a forwarded request reads no clock")), Next::Continue);
}

#[test]
fn a_failed_header_write_is_a_500_never_a_half_changed_request() {
    let mut h = Harness::new();
    let outcome = forwarded_request(&mut h);
    let writes = {
        let mut host = RecordingHost::default();
        apply(&mut host, &outcome, &|| 0);
        host.calls.len()
    };
    for n in 0..writes {
        let mut host = RecordingHost::failing_at(n);
        assert_eq!(apply(&mut host, &outcome, &|| 0), Next::Stop, "write {n} failed");
        assert_eq!(host.replies(), [&format!("reply 500 \"{HOST_FAILURE}\"")], "write {n} failed: {:?}", host.calls);
        assert_eq!(host.calls.len(), n + 2, "nothing is written after the failure");
    }
}

#[test]
fn a_denial_is_answered_and_a_failed_reply_still_stops_the_request() {
    let mut h = Harness::new();
    let outcome = h.run("GET", "/api/v1/events/1", &[]);
    let mut host = RecordingHost::default();
    assert_eq!(apply(&mut host, &outcome, &|| 0), Next::Stop);
    assert_eq!(host.calls, ["reply 401 \"TOKEN_MISSING\""]);
    let mut failing = RecordingHost::failing_at(0);
    assert_eq!(apply(&mut failing, &outcome, &|| 0), Next::Stop, "fail closed even when the reply fails");
}

/// The host-call budget bench/README.md lists for deployed_cost.py's workloads: the filter
/// adds to the header-map read and (for a refusal) the reply's clock read only these.
#[test]
fn the_benchs_requests_make_the_listed_host_calls() {
    let mut config = crate::decision::tests::config();
    config.identity_signing_key = Some("identity-key-identity-key-0123456789".into());
    let mut h = Harness::with(config);
    let auth: &'static str = Box::leak(bearer(&token(json!({}))).into_boxed_str());
    let envoys_id = "0262666b-b131-4751-9433-9b6c45ea58b7";
    let ok = h.run("GET", "/api/v1/venues/v1", &[("authorization", auth), ("x-tenant-id", "evil"), ("x-request-id", envoys_id)]);
    let mut host = RecordingHost::default();
    assert_eq!(apply(&mut host, &ok, &|| panic!("a forwarded request reads no clock")), Next::Continue);
    let kinds: Vec<&str> = host.calls.iter().map(|c| c.split_once(' ').map_or("", |(kind, _)| kind)).collect();
    assert_eq!(kinds, ["set", "add", "add", "add", "add", "add", "add"], "200 with signing: {:?}", host.calls);

    let bad = format!("{}x", &auth[..auth.len() - 1]);
    let bad: &'static str = Box::leak(bad.into_boxed_str());
    for (headers, status) in [([("authorization", bad)], 401), ([("authorization", auth)], 403)] {
        let path = if status == 403 { "/api/v1/venues/v9/events" } else { "/api/v1/venues/v1" };
        let method = if status == 403 { "POST" } else { "GET" };
        let refused = h.run(method, path, &headers);
        let mut host = RecordingHost::default();
        let clock_reads = std::cell::Cell::new(0);
        let now = || {
            clock_reads.set(clock_reads.get() + 1);
            0
        };
        assert_eq!(apply(&mut host, &refused, &now), Next::Stop);
        assert_eq!(host.calls.len(), 1, "{status}: {:?}", host.calls);
        assert!(host.calls[0].starts_with(&format!("reply {status} ")), "{:?}", host.calls);
        assert_eq!(clock_reads.get(), 1, "{status}: the reply's timestamp");
    }
}
