#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Request validation through a real Envoy, with the schemas the shipped registry carries
//! (registry/tickettoken.yaml): each original schema's valid example reaches the upstream
//! byte for byte, invalid ones get 422 with every violation; 400 for a body that is not
//! JSON, 413 over the limit; routes without a schema stream as before.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stagedoor_e2e::fixtures::{auth_yaml, bearer};
use stagedoor_e2e::raw::{self, RawResponse};
use stagedoor_e2e::stack::{wait_for, workspace_root};
use stagedoor_e2e::{Stack, StackOptions};

const UUID_V4: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
/// A version 1 UUID: a valid `uuid`, refused where the original wanted version 4.
const UUID_V1: &str = "c232ab00-9414-11ec-b3c8-9f6bdeced846";

/// The shipped registry's services that carry schemas, with their validation exactly as
/// shipped; rules dropped (any valid token will do) and instances pointed at echoes.
fn registry() -> String {
    let shipped = std::fs::read_to_string(workspace_root().join("registry/tickettoken.yaml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&shipped).unwrap();
    let services: Vec<serde_yaml::Value> = doc["services"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|svc| svc.get("validation").is_some())
        .map(|svc| {
            let mut svc = svc.clone();
            let map = svc.as_mapping_mut().unwrap();
            map.remove("rules");
            map.insert("instances".into(), serde_yaml::from_str("[{ address: 127.0.0.1, port: 1 }]").unwrap());
            svc
        })
        .collect();
    // updateEvent gets a 64 KiB limit here, so the filter's own check of a chunked body is
    // seen below Envoy's 1 MiB buffer limit.
    let mut services = services;
    for entry in services[1]["validation"].as_sequence_mut().unwrap() {
        if entry["method"] == "PUT" {
            entry.as_mapping_mut().unwrap().insert("max_body_bytes".into(), 65536.into());
        }
    }
    let names: Vec<&str> = services.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["venue", "event", "ticket", "marketplace"], "the shipped services with schemas");
    format!("{}services:\n{}", auth_yaml(), indent(&serde_yaml::to_string(&services).unwrap()))
}

fn indent(yaml: &str) -> String {
    yaml.lines().map(|l| format!("  {l}\n")).collect()
}

fn start() -> Stack {
    let stack = Stack::start(StackOptions { registry_yaml: registry(), ..Default::default() });
    stack.wait_ready();
    stack
}

fn send(stack: &Stack, method: &str, target: &str, body: &str) -> RawResponse {
    let auth = format!("Authorization: {}", bearer(json!({})));
    raw::request(stack.gateway_port, method, target, &[&auth, "Content-Type: application/json"], body)
}

/// The request reached the upstream with exactly the bytes sent.
fn assert_forwarded(stack: &Stack, method: &str, target: &str, body: &str) {
    let r = send(stack, method, target, body);
    assert_eq!(r.status, 200, "{method} {target}: {}", r.body);
    assert_eq!(r.json()["body"].as_str(), Some(body), "{method} {target}: the upstream got other bytes");
}

/// 422 VALIDATION_FAILED with exactly these (field, rule) details, in any order.
fn assert_invalid(stack: &Stack, method: &str, target: &str, body: &str, expected: &[(&str, &str)]) {
    let r = send(stack, method, target, body);
    assert_eq!(r.status, 422, "{method} {target}: {}", r.body);
    let reply = r.json();
    assert_eq!((reply["statusCode"].as_u64(), reply["code"].as_str()), (Some(422), Some("VALIDATION_FAILED")), "{}", r.body);
    assert!(reply["requestId"].as_str().is_some_and(|id| !id.is_empty()), "{}", r.body);
    let mut got: Vec<(String, String)> = reply["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert!(d["message"].as_str().is_some_and(|m| !m.is_empty()), "{d}");
            (d["field"].as_str().unwrap().to_owned(), d["rule"].as_str().unwrap().to_owned())
        })
        .collect();
    got.sort();
    let mut expected: Vec<(String, String)> = expected.iter().map(|(f, r)| ((*f).to_owned(), (*r).to_owned())).collect();
    expected.sort();
    assert_eq!(got, expected, "{method} {target}: {}", r.body);
}

fn assert_refused(r: &RawResponse, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!((r.json()["statusCode"].as_u64(), r.json()["code"].as_str()), (Some(u64::from(status)), Some(code)), "{}", r.body);
}

#[test]
fn each_shipped_schema_accepts_its_example_and_names_every_violation() {
    let stack = start();
    let address = json!({"street": "1 Main St", "city": "Springfield", "state": "IL", "country": "US", "postalCode": "62701"});

    // createVenue
    let venue = json!({"name": "Main Hall", "address": address, "capacity": 500, "contactEmail": "ops@venue.example",
        "contactPhone": "+14155550100", "tier": "premium"});
    assert_forwarded(&stack, "POST", "/api/v1/venues", &venue.to_string());
    let bad = json!({"name": "ab", "address": {"city": "Springfield"}, "capacity": 0, "contactEmail": "ops",
        "contactPhone": "0123", "tier": "gold"});
    assert_invalid(&stack, "POST", "/api/v1/venues", &bad.to_string(), &[
        ("/body/name", "minLength"), ("/body/address/street", "required"), ("/body/address/state", "required"),
        ("/body/address/country", "required"), ("/body/address/postalCode", "required"), ("/body/capacity", "minimum"),
        ("/body/contactEmail", "format"), ("/body/contactPhone", "format"), ("/body/tier", "enum"),
    ]);
    assert_invalid(&stack, "POST", "/api/v1/venues", "{}", &[
        ("/body/name", "required"), ("/body/address", "required"), ("/body/capacity", "required"), ("/body/contactEmail", "required"),
    ]);

    // updateVenue: the path param is a version 4 UUID.
    assert_forwarded(&stack, "PUT", &format!("/api/v1/venues/{UUID_V4}"), r#"{"capacity": 750}"#);
    assert_invalid(&stack, "PUT", &format!("/api/v1/venues/{UUID_V1}"), r#"{"name": 5, "address": {"city": ""}}"#, &[
        ("/params/venueId", "pattern"), ("/body/name", "type"), ("/body/address/city", "minLength"),
    ]);

    // createEvent
    let tier = json!({"name": "GA", "price": 49.5, "quantity": 100});
    let event = json!({"venueId": UUID_V4, "name": "Spring Concert", "startDate": "2027-04-01T19:30:00Z",
        "category": "concert", "ticketTiers": [tier], "nftEnabled": false});
    assert_forwarded(&stack, "POST", "/api/v1/events", &event.to_string());
    let bad = json!({"venueId": UUID_V1, "name": "Spring Concert", "startDate": "2027-04-01",
        "category": "opera", "ticketTiers": [{"name": "GA", "price": 0, "quantity": 1.5}]});
    assert_invalid(&stack, "POST", "/api/v1/events", &bad.to_string(), &[
        ("/body/venueId", "pattern"), ("/body/startDate", "format"), ("/body/category", "enum"),
        ("/body/ticketTiers/0/price", "exclusiveMinimum"), ("/body/ticketTiers/0/quantity", "type"),
    ]);

    // updateEvent
    assert_forwarded(&stack, "PUT", &format!("/api/v1/events/{UUID_V4}"), r#"{"status":"published"}"#);
    assert_invalid(&stack, "PUT", &format!("/api/v1/events/{UUID_V4}"), r#"{"status":"postponed","description":7}"#, &[
        ("/body/status", "enum"), ("/body/description", "type"),
    ]);

    // purchaseTickets
    let purchase = json!({"eventId": UUID_V4, "items": [{"ticketTypeId": "ga", "quantity": 2, "price": 49.5}]});
    assert_forwarded(&stack, "POST", "/api/v1/tickets/purchase", &purchase.to_string());
    assert_invalid(&stack, "POST", "/api/v1/tickets/purchase", &json!({"eventId": "x", "items": []}).to_string(), &[
        ("/body/eventId", "format"), ("/body/items", "minItems"),
    ]);
    let bad_items = json!({"eventId": UUID_V4, "items": [{"ticketTypeId": "ga", "quantity": 11, "price": -1}, {"quantity": 1, "price": 1}]});
    assert_invalid(&stack, "POST", "/api/v1/tickets/purchase", &bad_items.to_string(), &[
        ("/body/items/0/quantity", "maximum"), ("/body/items/0/price", "exclusiveMinimum"), ("/body/items/1/ticketTypeId", "required"),
    ]);

    // validateTicket
    assert_forwarded(&stack, "POST", "/api/v1/tickets/validate", &json!({"ticketId": UUID_V1, "entrance": "north"}).to_string());
    assert_invalid(&stack, "POST", "/api/v1/tickets/validate", r#"{"ticketId":"T-1","scannerDeviceId":""}"#, &[
        ("/body/ticketId", "format"), ("/body/scannerDeviceId", "minLength"),
    ]);

    // createListing
    let listing = json!({"ticketId": UUID_V4, "price": 120, "expiresAt": "2027-01-01T00:00:00.000+01:00"});
    assert_forwarded(&stack, "POST", "/api/v1/marketplace/listings", &listing.to_string());
    assert_invalid(&stack, "POST", "/api/v1/marketplace/listings", &json!({"ticketId": UUID_V4, "price": 0, "expiresAt": "soon"}).to_string(), &[
        ("/body/price", "exclusiveMinimum"), ("/body/expiresAt", "format"),
    ]);

    // purchaseListing
    assert_forwarded(&stack, "POST", "/api/v1/marketplace/purchase", &json!({"listingId": UUID_V4, "paymentMethodId": "pm_1"}).to_string());
    assert_invalid(&stack, "POST", "/api/v1/marketplace/purchase", &json!({"listingId": UUID_V4}).to_string(), &[
        ("/body/paymentMethodId", "required"),
    ]);

    // pagination, on every list route that has it
    for list in ["/api/v1/venues", "/api/v1/events", "/api/v1/marketplace/listings"] {
        let r = send(&stack, "GET", &format!("{list}?page=2&limit=100&sortOrder=desc&sortBy=name"), "");
        assert_eq!(r.status, 200, "{list}: {}", r.body);
        assert_invalid(&stack, "GET", &format!("{list}?page=0&limit=101&sortOrder=up"), "", &[
            ("/query/page", "minimum"), ("/query/limit", "maximum"), ("/query/sortOrder", "enum"),
        ]);
        assert_invalid(&stack, "GET", &format!("{list}?page=two"), "", &[("/query/page", "type")]);
    }
}

#[test]
fn forwarded_bytes_are_the_bytes_received_and_bad_bodies_are_400_or_413() {
    let stack = start();
    // Odd spacing, member order, escapes, a duplicate-free unknown member, non-ASCII: a
    // re-serialized body would differ in every one of these.
    let body = "{ \"items\" :[{\"price\":49.50,\"quantity\":2,\"ticketTypeId\":\"g\\u0061 \u{e9}\"}],\n\t\"eventId\":\"0F8FAD5B-D9CB-469F-A165-70867728950E\", \"note\": null }";
    assert_forwarded(&stack, "POST", "/api/v1/tickets/purchase", body);

    // A 2 KiB purchase (the bench's request) goes through whole.
    let items: Vec<Value> = (0..30).map(|i| json!({"ticketTypeId": format!("tier-{i:03}-padding-padding"), "quantity": 1 + i % 10, "price": 10.25})).collect();
    let big = json!({"eventId": UUID_V4, "items": items}).to_string();
    assert!(big.len() >= 2048, "{}", big.len());
    assert_forwarded(&stack, "POST", "/api/v1/tickets/purchase", &big);

    assert_refused(&send(&stack, "POST", "/api/v1/tickets/purchase", "eventId=1"), 400, "BODY_NOT_JSON");
    assert_refused(&send(&stack, "POST", "/api/v1/tickets/purchase", "{\"eventId\":"), 400, "BODY_NOT_JSON");
    assert_refused(&send(&stack, "POST", "/api/v1/tickets/purchase", ""), 400, "BODY_NOT_JSON");
    assert_refused(&send(&stack, "GET", "/api/v1/events?page=%zz", ""), 400, "QUERY_UNREADABLE");

    // Over the default 1 MiB limit: refused by its Content-Length before it is buffered.
    let started = Instant::now();
    let huge = format!("{{\"eventId\":\"{}\"}}", "x".repeat(1024 * 1024));
    let r = send(&stack, "POST", "/api/v1/tickets/purchase", &huge);
    println!("1 MiB + body refused in {:?}", started.elapsed());
    assert_refused(&r, 413, "BODY_TOO_LARGE");
    let head = format!("{{\"ticketId\":\"{UUID_V4}\",\"entrance\":\"");
    let exactly = format!("{head}{}\"}}", "n".repeat(1024 * 1024 - head.len() - 2));
    assert_eq!(exactly.len(), 1024 * 1024);
    let r = send(&stack, "POST", "/api/v1/tickets/validate", &exactly);
    assert_eq!(r.status, 200, "a body at the limit passes: {}", &r.body[..r.body.len().min(300)]);

    // Routes without a schema stream as before: any body, JSON or not.
    assert_forwarded(&stack, "POST", "/api/v1/tickets/sell", "not json at all");
    assert_forwarded(&stack, "DELETE", &format!("/api/v1/events/{UUID_V4}"), "");

    // Five refusals above; the count reaches Envoy on the filter's next tick.
    let counted = || stack.envoy_stat(0, "wasmcustom.stagedoor_validation_refused");
    let seen = wait_for(Duration::from_secs(5), || counted() == Some(5));
    assert!(seen, "stagedoor_validation_refused = {:?}", counted());
}

/// Sends a chunked body (no Content-Length) in `chunks` 256 KiB chunks; returns the reply
/// and what was written before the gateway answered (bounded: `chunks` at most).
fn send_chunked(stack: &Stack, target: &str, chunks: usize) -> (String, usize, Duration) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", stack.gateway_port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "PUT {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        bearer(json!({}))
    );
    stream.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b' '; 256 * 1024];
    let started = Instant::now();
    let mut sent = 0;
    for _ in 0..chunks {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if stream.write_all(&framed).is_err() {
            break; // the gateway answered and closed
        }
        sent += chunk.len();
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    (String::from_utf8_lossy(&reply).into_owned(), sent, started.elapsed())
}

/// A chunked body over the route's limit is the JSON 413 BODY_TOO_LARGE: the filter's own
/// below Envoy's 1 MiB buffer limit, Envoy's above it (both through the listener's 413
/// mapping, which gives them one body template).
#[test]
fn a_chunked_body_over_the_limit_is_413() {
    let stack = start();
    let short = |reply: &str| reply[..reply.len().min(500)].to_owned();
    let (reply, sent, took) = send_chunked(&stack, &format!("/api/v1/events/{UUID_V4}"), 2);
    println!("updateEvent (64 KiB limit), chunked: {sent} bytes written, reply after {took:?}");
    assert!(reply.starts_with("HTTP/1.1 413"), "{}", short(&reply));
    // The filter's own reply (its cache-control header; the listener's 413 mapping gives
    // the body its template, same status and code).
    assert!(reply.contains(r#""code":"BODY_TOO_LARGE""#) && reply.contains("cache-control: no-store"), "the filter's: {}", short(&reply));

    let (reply, sent, took) = send_chunked(&stack, &format!("/api/v1/venues/{UUID_V4}"), 8);
    println!("updateVenue (1 MiB limit), chunked: {sent} bytes written, reply after {took:?}");
    assert!(reply.starts_with("HTTP/1.1 413"), "{}", short(&reply));
    assert!(reply.contains(r#""statusCode":413"#) && reply.contains(r#""code":"BODY_TOO_LARGE""#), "{}", short(&reply));
}
