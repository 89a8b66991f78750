use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use proptest::prelude::*;

use super::replay::{read_verdict, ReplayVerdict};
use super::*;

const SECRET: &str = "partner-acme-secret-0123456789";
const LEGACY_SECRET: &str = "legacy-caller-secret-0123456789";
const NOW: i64 = 1_800_000_000;

fn config() -> SignedRequestsConfig {
    SignedRequestsConfig {
        tolerance_secs: DEFAULT_TOLERANCE_SECS,
        keys: vec![
            SigningKeyConfig { id: String::from("acme"), secret: SECRET.into(), legacy_body_only: false },
            SigningKeyConfig { id: String::from("old-node"), secret: LEGACY_SECRET.into(), legacy_body_only: true },
        ],
        replay: ReplayConfig { cluster: String::from("stagedoor_ratelimit"), timeout_ms: 250 },
    }
}

fn policy() -> SignaturePolicy {
    SignaturePolicy::compile(&config()).unwrap()
}

fn headers<'a>(key: &'a str, ts: &'a str, sig: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("x-signature-key-id", key), ("x-timestamp", ts), ("x-signature", sig), ("content-type", "application/json")]
}

/// The whole check of one request: head, then body.
fn check(method: &str, target: &str, hs: &[(&str, &str)], body: &[u8], now: i64) -> Result<Verified, SignatureError> {
    check_signed_head(&policy(), method, target, hs, now)?.verify(body)
}

#[test]
fn the_canonical_string_is_timestamp_dot_method_path_dot_body() {
    let s = canonical_string("1764600000", "POST", "/api/v1/payments/refund?dry=1", br#"{"id":"p1"}"#, false);
    assert_eq!(s, br#"1764600000.POST/api/v1/payments/refund?dry=1.{"id":"p1"}"#.to_vec());
    let legacy = canonical_string("1764600000123", "POST", "/ignored", br#"{"id":"p1"}"#, true);
    assert_eq!(legacy, br#"1764600000123.{"id":"p1"}"#.to_vec());
    // An independent HMAC of those bytes is what `sign` produces.
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    hmac::Mac::update(&mut mac, &s);
    let expected: String = hmac::Mac::finalize(mac).into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(sign(SECRET.as_bytes(), "1764600000", "POST", "/api/v1/payments/refund?dry=1", br#"{"id":"p1"}"#, false), expected);
}

#[test]
fn a_good_signature_passes_in_hex_either_case_and_in_base64() {
    let ts = NOW.to_string();
    let body = br#"{"amount": 100}"#;
    let hex = sign(SECRET.as_bytes(), &ts, "POST", "/api/v1/payments", body, false);
    let bytes = decode_signature(&hex).unwrap();
    let verified = check("POST", "/api/v1/payments", &headers("acme", &ts, &hex), body, NOW).unwrap();
    assert_eq!(verified.key_id, "acme");
    for encoded in [hex.to_ascii_uppercase(), STANDARD.encode(bytes), URL_SAFE_NO_PAD.encode(bytes)] {
        let again = check("POST", "/api/v1/payments", &headers("acme", &ts, &encoded), body, NOW).unwrap();
        assert_eq!(again.replay_digest, verified.replay_digest, "one MAC, one replay slot, however it is written");
    }
}

#[test]
fn the_head_is_refused_in_the_order_a_caller_fixes_it() {
    let ts = NOW.to_string();
    let sig = sign(SECRET.as_bytes(), &ts, "GET", "/a", b"", false);
    let p = policy();
    for missing in ["x-signature-key-id", "x-timestamp", "x-signature"] {
        let hs: Vec<_> = headers("acme", &ts, &sig).into_iter().filter(|(n, _)| *n != missing).collect();
        assert_eq!(check_signed_head(&p, "GET", "/a", &hs, NOW).unwrap_err(), SignatureError::Missing, "{missing}");
    }
    assert_eq!(check_signed_head(&p, "GET", "/a", &headers("nobody", &ts, &sig), NOW).unwrap_err(), SignatureError::UnknownKey);
    for bad in ["", "12a", "-5", "1.5", "99999999999999999"] {
        assert_eq!(check_signed_head(&p, "GET", "/a", &headers("acme", bad, &sig), NOW).unwrap_err(), SignatureError::BadTimestamp, "{bad:?}");
    }
    for bad in ["zz", "00", &"0".repeat(63), &"g".repeat(64), "not base64!"] {
        assert_eq!(check_signed_head(&p, "GET", "/a", &headers("acme", &ts, bad), NOW).unwrap_err(), SignatureError::Invalid, "{bad:?}");
    }
    let mut repeated = headers("acme", &ts, &sig);
    repeated.push(("x-signature", "00"));
    assert_eq!(check_signed_head(&p, "GET", "/a", &repeated, NOW).unwrap_err(), SignatureError::Invalid);
}

#[test]
fn the_timestamp_may_be_the_tolerance_away_either_way_and_no_further() {
    let tolerance = DEFAULT_TOLERANCE_SECS as i64;
    for (signed_at, ok) in [(NOW - tolerance, true), (NOW + tolerance, true), (NOW - tolerance - 1, false), (NOW + tolerance + 1, false)] {
        let ts = signed_at.to_string();
        let sig = sign(SECRET.as_bytes(), &ts, "GET", "/a", b"", false);
        let result = check("GET", "/a", &headers("acme", &ts, &sig), b"", NOW);
        assert_eq!(result.is_ok(), ok, "signed at now{:+}", signed_at - NOW);
        if !ok {
            assert_eq!(result.unwrap_err(), SignatureError::Expired);
        }
    }
    // Milliseconds (the original's Date.now()) are read as such.
    let ms = (NOW * 1000 + 999).to_string();
    let sig = sign(SECRET.as_bytes(), &ms, "GET", "/a", b"", false);
    assert!(check("GET", "/a", &headers("acme", &ms, &sig), b"", NOW).is_ok());
    let stale_ms = ((NOW - 301) * 1000).to_string();
    let sig = sign(SECRET.as_bytes(), &stale_ms, "GET", "/a", b"", false);
    assert_eq!(check("GET", "/a", &headers("acme", &stale_ms, &sig), b"", NOW).unwrap_err(), SignatureError::Expired);
}

#[test]
fn a_legacy_key_signs_timestamp_and_body_only_and_other_keys_may_not() {
    let ts = (NOW * 1000).to_string();
    let body = br#"{"event":"sold"}"#;
    let legacy = sign(LEGACY_SECRET.as_bytes(), &ts, "", "", body, true);
    assert!(check("POST", "/api/v1/anything", &headers("old-node", &ts, &legacy), body, NOW).is_ok());
    assert!(check("PUT", "/elsewhere", &headers("old-node", &ts, &legacy), body, NOW).is_ok(), "method and path are not signed");
    assert_eq!(check("POST", "/a", &headers("old-node", &ts, &legacy), b"{}", NOW).unwrap_err(), SignatureError::Invalid);
    // The full form's key does not accept the legacy form.
    let legacy_with_full_key = sign(SECRET.as_bytes(), &ts, "", "", body, true);
    assert_eq!(check("POST", "/a", &headers("acme", &ts, &legacy_with_full_key), body, NOW).unwrap_err(), SignatureError::Invalid);
}

#[test]
fn another_key_or_another_signature_is_invalid_and_digests_differ() {
    let ts = NOW.to_string();
    let theirs = sign(b"someone-else-entirely-0123456789", &ts, "GET", "/a", b"", false);
    assert_eq!(check("GET", "/a", &headers("acme", &ts, &theirs), b"", NOW).unwrap_err(), SignatureError::Invalid);
    let one = check("GET", "/a", &headers("acme", &ts, &sign(SECRET.as_bytes(), &ts, "GET", "/a", b"", false)), b"", NOW).unwrap();
    let two = check("GET", "/b", &headers("acme", &ts, &sign(SECRET.as_bytes(), &ts, "GET", "/b", b"", false)), b"", NOW).unwrap();
    assert_ne!(one.replay_digest, two.replay_digest);
    assert_eq!(one.replay_digest.len(), 64);
}

#[test]
fn error_codes_are_distinct_and_all_listed() {
    let mut codes: Vec<_> = SignatureError::ALL.iter().map(|e| e.code()).collect();
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), SignatureError::ALL.len());
    for (i, e) in SignatureError::ALL.iter().enumerate() {
        assert_eq!(e.index(), i);
        assert!(e.code().starts_with("SIGNATURE_"));
    }
    assert_eq!(SignatureError::ReplayUnavailable.denial().status, 503);
    assert_eq!(SignatureError::Replayed.denial().status, 401);
}

#[test]
fn bad_configs_are_refused_naming_the_field() {
    let mut c = config();
    c.tolerance_secs = 0;
    assert_eq!(SignaturePolicy::compile(&c).unwrap_err().field, "tolerance_secs");
    let mut c = config();
    c.keys[1].id = String::from("acme");
    assert_eq!(SignaturePolicy::compile(&c).unwrap_err().to_string(), "keys[1] (\"acme\").id: is used twice");
    let mut c = config();
    c.keys[0].secret = String::from("short");
    assert_eq!(SignaturePolicy::compile(&c).unwrap_err().field, "keys[0] (\"acme\").secret");
    let mut c = config();
    c.keys[0].id = String::from("has space");
    assert_eq!(SignaturePolicy::compile(&c).unwrap_err().field, "keys[0] (\"has space\").id");
    let mut c = config();
    c.keys.clear();
    assert_eq!(SignaturePolicy::compile(&c).unwrap_err().field, "keys");
    let bad_route = SignedRouteConfig { method: String::from("post"), path: String::from("/x") };
    assert_eq!(SignedRoutes::compile(false, &[bad_route]).unwrap_err().field, "signed_routes[0]");
    assert_eq!(policy().replay_window_secs(), 600);
}

#[test]
fn signed_routes_cover_any_reading_of_the_path() {
    let routes = SignedRoutes::compile(false, &[SignedRouteConfig { method: String::from("POST"), path: String::from("/api/v1/payments/{id}/refund") }]).unwrap();
    let readings = |p: &'static str| crate::path::PathReadings::read(p).unwrap();
    assert!(routes.require("POST", &readings("/api/v1/payments/p1/refund")));
    assert!(routes.require("POST", &readings("/api/v1/payments/p1/REFUND")), "a case variant is signed too");
    assert!(!routes.require("GET", &readings("/api/v1/payments/p1/refund")));
    assert!(!routes.require("POST", &readings("/api/v1/payments/p1")));
    assert!(SignedRoutes::compile(true, &[]).unwrap().require("GET", &readings("/anything")));
    assert!(SignedRoutes::compile(false, &[]).unwrap().is_empty());
}

#[test]
fn the_replay_request_and_verdict_read_as_protobuf() {
    let request = replay::rate_limit_request("ab", 600_000);
    // domain "stagedoor", one descriptor with two entries, hits_addend 1.
    let mut expected = vec![0x0a, 9];
    expected.extend_from_slice(b"stagedoor");
    let entry = |k: &str, v: &str| {
        let mut e = vec![0x0a, k.len() as u8];
        e.extend_from_slice(k.as_bytes());
        e.extend([0x12, v.len() as u8]);
        e.extend_from_slice(v.as_bytes());
        e
    };
    let (e1, e2) = (entry("signature_replay", "ab"), entry("window_ms", "600000"));
    let mut descriptor = vec![0x0a, e1.len() as u8];
    descriptor.extend(e1);
    descriptor.extend([0x0a, e2.len() as u8]);
    descriptor.extend(e2);
    expected.extend([0x12, descriptor.len() as u8]);
    expected.extend(descriptor);
    expected.extend([0x18, 1]);
    assert_eq!(request, expected);

    assert_eq!(read_verdict(&[0x08, 1]), ReplayVerdict::FirstUse);
    assert_eq!(read_verdict(&[0x08, 2]), ReplayVerdict::Replayed);
    // Headers to add (field 3) before the code are skipped.
    assert_eq!(read_verdict(&[0x1a, 2, 0x0a, 0, 0x08, 2]), ReplayVerdict::Replayed);
    assert_eq!(read_verdict(&[]), ReplayVerdict::Unreadable, "UNKNOWN");
    assert_eq!(read_verdict(&[0x08]), ReplayVerdict::Unreadable);
    assert_eq!(read_verdict(&[0x1a, 9, 0]), ReplayVerdict::Unreadable, "a length past the end");
    assert_eq!(replay::grpc_service("c"), vec![0x0a, 3, 0x0a, 1, b'c']);
}

/// One request's parts, to mutate one byte of one part.
#[derive(Debug, Clone)]
struct Parts {
    timestamp: String,
    method: String,
    target: String,
    body: Vec<u8>,
}

fn mutate(bytes: &[u8], at: usize, flip: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if out.is_empty() {
        out.push(flip);
    } else {
        let i = at % out.len();
        out[i] ^= flip;
    }
    out
}

proptest! {
    /// Any single-byte change of the body, the path, the method or the timestamp fails the
    /// check; the unchanged request passes.
    #[test]
    fn any_single_byte_change_is_refused(
        offset in -300i64..=300,
        method in proptest::sample::select(vec!["GET", "POST", "PUT", "DELETE"]),
        target in "/[a-z0-9/]{0,24}(\\?[a-z=&0-9]{0,12})?",
        body in proptest::collection::vec(any::<u8>(), 0..64),
        part in 0usize..4,
        at in any::<usize>(),
        flip in 1u8..=255,
    ) {
        let parts = Parts { timestamp: (NOW + offset).to_string(), method: method.to_owned(), target, body };
        let sig = sign(SECRET.as_bytes(), &parts.timestamp, &parts.method, &parts.target, &parts.body, false);
        let hs = headers("acme", &parts.timestamp, &sig);
        prop_assert!(check(&parts.method, &parts.target, &hs, &parts.body, NOW).is_ok());
        let mut changed = parts.clone();
        let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
        match part {
            0 => changed.body = mutate(&parts.body, at, flip),
            1 => changed.target = text(mutate(parts.target.as_bytes(), at, flip)),
            2 => changed.method = text(mutate(parts.method.as_bytes(), at, flip)),
            _ => changed.timestamp = text(mutate(parts.timestamp.as_bytes(), at, flip)),
        }
        prop_assume!(changed.target != parts.target || part != 1);
        prop_assume!(changed.method != parts.method || part != 2);
        let hs = headers("acme", &changed.timestamp, &sig);
        let result = check(&changed.method, &changed.target, &hs, &changed.body, NOW);
        // A changed timestamp may also read as a bad or stale one; never as a pass.
        prop_assert!(result.is_err(), "{:?} passed after changing part {}", changed, part);
    }

    /// The verdict reader never panics and reads only codes 1 and 2 as answers.
    #[test]
    fn the_verdict_reader_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
        let verdict = read_verdict(&bytes);
        prop_assert!(matches!(verdict, ReplayVerdict::FirstUse | ReplayVerdict::Replayed | ReplayVerdict::Unreadable));
    }
}

/// The head check runs on every forwarded request; the clock (a host call in the filter) is
/// read only for a request whose route must be signed.
#[test]
fn the_clock_is_read_only_for_a_route_that_must_be_signed() {
    let reads = std::cell::Cell::new(0);
    let clock = || {
        reads.set(reads.get() + 1);
        NOW
    };
    let mut config = crate::decision::tests::config();
    let unsigned = crate::Policy::compile(&config).unwrap();
    assert_eq!(check_request_head(&unsigned, "GET", "/api/v1/events/e1", &[], clock), Ok(None));
    assert_eq!(reads.get(), 0, "no signed_requests: no clock read");

    config.signed_requests = Some(self::config());
    config.services[1].require_signatures = true;
    let signed = crate::Policy::compile(&config).unwrap();
    assert_eq!(check_request_head(&signed, "GET", "/api/v1/auth/me", &[], clock), Ok(None));
    assert_eq!(reads.get(), 0, "a service that signs nothing: no clock read");
    assert!(check_request_head(&signed, "GET", "/api/v1/events/e1", &[], clock).is_err(), "unsigned, refused at the head");
    assert_eq!(reads.get(), 1, "a route that must be signed reads the clock once");
}
