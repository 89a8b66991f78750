#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The control plane's web page (/ui) in a real browser: headless Chromium loads it from a
//! real control plane serving two real Envoys, one started without the maglev load
//! balancer (as tests/tests/ledger.rs), so a registry edit giving a service maglev is
//! NACKed by that one only. With a `read` API token (sent as the API wants it, in the
//! authorization header) the page renders its tables, shows the NACKed node with Envoy's
//! message and the registry entry, and the other node SYNCED; without one, 401.
//! The screenshot goes under the target dir (docs/dashboard.png is a copy of one).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use stagedoor_e2e::browser::{require_chromium, spki_sha256_base64, Browser};
use stagedoor_e2e::fixtures::auth_yaml;
use stagedoor_e2e::stack::time_until;
use stagedoor_e2e::status_cli::envoy;
use stagedoor_e2e::{Stack, StackOptions};

const READ_TOKEN: &str = "dashboard-reader-secret";

fn registry() -> String {
    auth_yaml()
        + r#"
services:
  - name: venue
    routes: [{ prefix: /api/v1/venues }]
    instances: [{ address: 127.0.0.1, port: 1 }]
  - name: ticket
    routes: [{ prefix: /api/v1/tickets }]
    instances: [{ address: 127.0.0.1, port: 1 }, { address: 127.0.0.1, port: 1 }]
"#
}

fn tokens_file(dir: &std::path::Path) -> PathBuf {
    use sha2::Digest;
    let path = dir.join("api-tokens.yaml");
    let digest = hex::encode(sha2::Sha256::digest(READ_TOKEN.as_bytes()));
    std::fs::write(&path, format!("tokens:\n  - {{ name: dashboard, sha256: {digest}, scopes: [read] }}\n")).unwrap();
    path
}

/// Every table of the page as rendered: its heading, and each row's cells (text, class).
const TABLES: &str = r#"[...document.querySelectorAll('table')].map(t => {
    let h = t.previousElementSibling;
    return {
        heading: h && /^H[12]$/.test(h.tagName) ? h.innerText : '',
        rows: [...t.rows].map(r => ({ class: r.className, cells: [...r.cells].map(c => ({ text: c.innerText, class: c.className })) })),
    };
})"#;

fn table<'a>(tables: &'a Value, heading_starts: &str) -> &'a Value {
    tables
        .as_array()
        .and_then(|t| t.iter().find(|t| t["heading"].as_str().is_some_and(|h| h.starts_with(heading_starts))))
        .unwrap_or_else(|| panic!("a table under a heading starting {heading_starts:?}: {tables:#}"))
}

/// The row whose first cell is `first`, as (the row's class, [(cell text, cell class)]).
fn row(table: &Value, first: &str) -> (String, Vec<(String, String)>) {
    let row = table["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["cells"][0]["text"] == first))
        .unwrap_or_else(|| panic!("a row for {first}: {table:#}"));
    let cells = row["cells"].as_array().unwrap().iter().map(|c| (c["text"].as_str().unwrap().to_owned(), c["class"].as_str().unwrap().to_owned())).collect();
    (row["class"].as_str().unwrap_or_default().to_owned(), cells)
}

/// The column index of `name` in a table's header row.
fn column(table: &Value, name: &str) -> usize {
    table["rows"][0]["cells"].as_array().unwrap().iter().position(|c| c["text"] == name).unwrap_or_else(|| panic!("a {name} column: {table:#}"))
}

#[test]
fn the_dashboard_in_chromium_shows_the_nacked_node_with_envoys_message_and_the_other_synced() {
    require_chromium();
    let tokens_dir = std::env::temp_dir().join(format!("stagedoor-dashboard-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&tokens_dir).unwrap();
    let tokens = tokens_file(&tokens_dir);
    let mut stack = Stack::start(StackOptions {
        registry_yaml: registry(),
        serve_args: vec!["--api-tokens".into(), tokens.display().to_string()],
        ..Default::default()
    });
    let good = stack.envoys[0].node_id.clone();
    let bad = format!("{good}-no-maglev");
    stack.start_envoy_with_args(&bad, &["--disable-extensions", "envoy.load_balancing_policies/envoy.load_balancing_policies.maglev"]);
    stack.wait_ready();

    // The edit only the Envoy without maglev refuses, waited for on the ledger.
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&stack.registry()).unwrap();
    doc["services"][0]["traffic"] = serde_yaml::from_str("{ load_balancing: { policy: maglev, hash_header: x-user-id } }").unwrap();
    stack.write_registry(&serde_yaml::to_string(&doc).unwrap());
    let converged = time_until(Duration::from_secs(30), || {
        let status = stack.control_plane_status();
        envoy(&status, &bad)["types"]["CDS"]["state"] == "NACKED" && envoy(&status, &good)["state"] == "SYNCED"
    });
    let status = stack.control_plane_status();
    assert!(converged.is_some(), "one Envoy NACKs the edit, the other runs it: {status:#}");
    let detail = envoy(&status, &bad)["types"]["CDS"]["rejected"]["detail"].as_str().unwrap().to_owned();

    // Chromium trusts the control plane's own certificate (by its key), nothing else.
    let control_plane_cert = std::fs::read_to_string(stack.tls_dir.join("control-plane.pem")).unwrap();
    let mut browser = Browser::start(&[spki_sha256_base64(&control_plane_cert)]);
    let url = format!("https://127.0.0.1:{}/ui", stack.http_port);

    // Without credentials, and with a token the file does not hold: 401, and no page.
    let anonymous = browser.navigate(&url);
    let body = browser.evaluate_loaded("document.body.innerText");
    assert_eq!(anonymous, 401, "{body}");
    assert!(body.as_str().unwrap().contains("no client certificate and no bearer token"), "{body}");
    browser.set_headers(&[("authorization", "Bearer not-the-token")]);
    assert_eq!(browser.navigate(&url), 401, "an unknown token is no credential");
    assert_eq!(browser.evaluate_loaded("document.querySelectorAll('table').length"), 0);

    // With the read token: the page.
    let bearer = format!("Bearer {READ_TOKEN}");
    browser.set_headers(&[("authorization", &bearer)]);
    assert_eq!(browser.navigate(&url), 200);
    assert_eq!(browser.evaluate_loaded("document.title"), "Stagedoor control plane");
    let tables = browser.evaluate_loaded(TABLES);
    eprintln!("{}", browser.evaluate_loaded("document.body.innerText").as_str().unwrap_or_default());

    let envoys = table(&tables, "Envoys");
    let (cds, nack) = (column(envoys, "CDS"), column(envoys, "NACK in force"));
    let (_, bad_row) = row(envoys, &bad);
    assert_eq!(bad_row[cds], (String::from("NACKED"), String::from("NACKED")), "{bad_row:?}");
    assert!(bad_row[nack].0.contains("svc_venue (service venue, traffic.load_balancing)"), "the registry entry: {bad_row:?}");
    assert!(bad_row[nack].0.contains(&detail) && detail.contains("No load balancer factory found"), "Envoy's message verbatim: {bad_row:?}");
    for t in ["EDS", "LDS", "RDS", "ECDS"] {
        assert_eq!(bad_row[column(envoys, t)].0, "SYNCED", "{t}: only CDS is refused: {bad_row:?}");
    }
    let (_, good_row) = row(envoys, &good);
    for t in ["CDS", "EDS", "LDS", "RDS", "ECDS"] {
        assert_eq!(good_row[column(envoys, t)], (String::from("SYNCED"), String::from("SYNCED")), "{t}: {good_row:?}");
    }
    assert_eq!(good_row[nack].0, "-", "{good_row:?}");

    let nacks = table(&tables, "Recent NACKs");
    let (_, recent) = row(nacks, &bad);
    assert_eq!(recent[1].0, "CDS");
    assert!(recent[3].0.contains("svc_venue (service venue, traffic.load_balancing)") && recent[4].0 == detail, "{recent:?}");
    assert_eq!(recent[5].0, "yes", "the NACK is in force");
    assert_eq!(nacks["rows"].as_array().unwrap().len(), 2, "no NACK from the other node: {nacks:#}");

    let services = table(&tables, "Services");
    let (venue_class, venue) = row(services, "venue");
    assert_eq!(venue_class, "NACKED", "the rejected service is marked: {venue:?}");
    assert!(venue[4].0.contains(&bad) && venue[4].0.contains("traffic.load_balancing"), "{venue:?}");
    let (ticket_class, ticket) = row(services, "ticket");
    assert_eq!((ticket_class.as_str(), ticket[4].0.as_str()), ("", "-"), "{ticket:?}");
    assert_eq!(ticket[2].0.split(' ').count(), 2, "both static instances: {ticket:?}");
    table(&tables, "Revocation and rate limiting");

    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    browser.screenshot(&screenshot);
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let (width, height) = (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
    eprintln!("screenshot {width}x{height} px ({} bytes): {}", png.len(), screenshot.display());
    assert!(width >= 1000 && height >= 400, "the whole page, at the window's width: {width}x{height}");
    drop(browser);
    let _ = std::fs::remove_dir_all(&tokens_dir);
}
