//! The read-only web page on the HTTP side (`/ui`): the /status JSON rendered as plain
//! server-side HTML, no script and no build toolchain, refreshed by the browser every 5 s.
//! Behind the same authentication as /status. Every value is escaped: node ids, NACK
//! details and service names come from outside.

use serde_json::Value;

use crate::status_table::TYPE_COLUMNS;

/// Text as HTML element content or a quoted attribute value.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// A JSON value as escaped cell text: strings bare, null as `-`.
fn text(value: &Value) -> String {
    match value {
        Value::Null => String::from("-"),
        Value::String(s) => escape_html(s),
        other => escape_html(&other.to_string()),
    }
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map(Vec::as_slice).unwrap_or_default()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin-bottom:1.5em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}.SYNCED{background:#e6f4ea}.PENDING{background:#fff4d6}.NACKED{background:#fbe2e2;font-weight:bold}\
.NOT_SENT,.DISCONNECTED{color:#777}code{font-size:.9em}";

fn state_cell(state: &str) -> String {
    let state = escape_html(state);
    format!("<td class=\"{state}\">{state}</td>")
}

fn envoys_table(envoys: &[Value], out: &mut String) {
    out.push_str("<table><tr><th>Node</th><th>Cluster</th><th>Protocol</th>");
    for t in TYPE_COLUMNS {
        out.push_str(&format!("<th>{t}</th>"));
    }
    out.push_str("<th>NACK in force</th></tr>");
    for envoy in envoys {
        out.push_str(&format!("<tr><td>{}</td><td>{}</td><td>{}</td>", text(&envoy["node_id"]), text(&envoy["node_cluster"]), text(&envoy["protocol"])));
        let connected = envoy["disconnected_at_unix_ms"].is_null();
        for t in TYPE_COLUMNS {
            let state = if !connected { "DISCONNECTED" } else { envoy["types"][t]["state"].as_str().unwrap_or("NOT_SENT") };
            out.push_str(&state_cell(state));
        }
        let reasons: Vec<String> = TYPE_COLUMNS
            .iter()
            .flat_map(|t| {
                let record = &envoy["types"][*t];
                let in_force = std::iter::once(&record["rejected"]).chain(array(&record["earlier_rejected"]));
                in_force.filter(|n| !n.is_null()).map(move |n| format!("{t} {}: <code>{}</code>", entries(n), text(&n["detail"])))
            })
            .collect();
        out.push_str(&format!("<td>{}</td></tr>", if reasons.is_empty() { String::from("-") } else { reasons.join("<br>") }));
    }
    out.push_str("</table>");
}

/// `svc_venue (service venue, traffic.load_balancing)` for the resources Envoy named.
fn entries(nack: &Value) -> String {
    let resources = array(&nack["resources"]);
    let named: Vec<&Value> = resources.iter().filter(|r| r["named_in_detail"] == true).collect();
    let shown: Vec<&Value> = if named.is_empty() { resources.iter().collect() } else { named };
    let described: Vec<String> = shown
        .iter()
        .map(|r| match (r["entry"]["service"].as_str(), r["entry"]["field"].as_str()) {
            (Some(service), Some(field)) => format!("{} (service {}, {})", text(&r["name"]), escape_html(service), escape_html(field)),
            (None, Some(field)) => format!("{} ({})", text(&r["name"]), escape_html(field)),
            _ => text(&r["name"]),
        })
        .collect();
    described.join("; ")
}

fn recent_nacks(envoys: &[Value], out: &mut String) {
    out.push_str("<h2>Recent NACKs</h2><table><tr><th>Node</th><th>Type</th><th>Version</th><th>Registry entry</th><th>Envoy's message</th><th>In force</th></tr>");
    let mut any = false;
    for envoy in envoys {
        for t in TYPE_COLUMNS {
            let last = &envoy["types"][t]["last_nack"];
            if last.is_null() {
                continue;
            }
            any = true;
            let in_force = if envoy["types"][t]["rejected"].is_null() { "cleared by a later ACK" } else { "yes" };
            out.push_str(&format!(
                "<tr><td>{}</td><td>{t}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{in_force}</td></tr>",
                text(&envoy["node_id"]),
                text(&last["version"]),
                entries(last),
                text(&last["detail"])
            ));
        }
    }
    if !any {
        out.push_str("<tr><td colspan=\"6\">none</td></tr>");
    }
    out.push_str("</table>");
}

fn services_table(services: &[Value], out: &mut String) {
    out.push_str("<h2>Services</h2><table><tr><th>Service</th><th>Prefixes</th><th>Static instances</th><th>Live instances (Redis)</th><th>Rejected by</th></tr>");
    for service in services {
        let prefixes: Vec<String> = array(&service["prefixes"]).iter().map(text).collect();
        let instance = |i: &Value| format!("{}:{}", text(&i["address"]), text(&i["port"]));
        let statics: Vec<String> = array(&service["instances"]).iter().map(instance).collect();
        let live: Vec<String> = array(&service["live_instances"]).iter().map(instance).collect();
        let rejected: Vec<String> = array(&service["rejected"])
            .iter()
            .map(|r| format!("{} {} ({}): <code>{}</code>", text(&r["node_id"]), text(&r["type"]), text(&r["field"]), text(&r["detail"])))
            .collect();
        let or_dash = |v: Vec<String>, sep: &str| if v.is_empty() { String::from("-") } else { v.join(sep) };
        out.push_str(&format!(
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if rejected.is_empty() { "" } else { " class=\"NACKED\"" },
            text(&service["name"]),
            or_dash(prefixes, " "),
            or_dash(statics, " "),
            or_dash(live, " "),
            or_dash(rejected, "<br>"),
        ));
    }
    out.push_str("</table>");
}

fn figures(status: &Value, out: &mut String) {
    let revocation = &status["revocation"];
    out.push_str("<h2>Revocation and rate limiting</h2><table>");
    let row = |name: &str, value: &Value| format!("<tr><th>{name}</th><td>{}</td></tr>", text(value));
    out.push_str(&row("revocation enabled", &revocation["enabled"]));
    out.push_str(&row("revoked tokens", &revocation["entries"]));
    out.push_str(&row("last filter poll (ms ago)", &revocation["last_poll_age_ms"]));
    out.push_str(&row("pending write-back to Redis", &revocation["pending_write_back"]));
    let rate_limit = &status["rate_limit"];
    if let Some(limits) = rate_limit.as_object() {
        for (name, value) in limits {
            out.push_str(&row(&format!("rate limit: {}", escape_html(name)), value));
        }
    } else {
        out.push_str(&row("global rate limit", &Value::String(String::from("not served (--ratelimit)"))));
    }
    out.push_str("</table>");
}

/// The page for one /status document.
pub fn render(status: &Value) -> String {
    let mut out = String::from("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">");
    out.push_str(&format!("<title>Stagedoor control plane</title><style>{STYLE}</style></head><body>"));
    out.push_str(&format!(
        "<h1>Stagedoor control plane</h1><p>registry <code>{}</code>, snapshot <code>{}</code></p>",
        text(&status["registry_version"]),
        text(&status["snapshot_version"])
    ));
    let envoys: Vec<Value> = array(&status["envoys"]).iter().chain(array(&status["disconnected_envoys"])).cloned().collect();
    out.push_str(&format!("<h2>Envoys ({})</h2>", array(&status["envoys"]).len()));
    envoys_table(&envoys, &mut out);
    recent_nacks(&envoys, &mut out);
    services_table(array(&status["services"]), &mut out);
    figures(status, &mut out);
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status() -> Value {
        json!({
            "registry_version": "r1", "snapshot_version": "s1",
            "envoys": [{
                "node_id": "gw-<b>", "node_cluster": "c", "protocol": "sotw", "disconnected_at_unix_ms": null,
                "types": {"CDS": {"state": "NACKED", "rejected": {"version": "v2", "detail": "bad <script>alert(1)</script>",
                    "resources": [{"name": "svc_venue", "named_in_detail": true, "entry": {"service": "venue", "field": "traffic.load_balancing"}}]},
                    "last_nack": {"version": "v2", "detail": "bad <script>alert(1)</script>", "resources": []}},
                    "EDS": {"state": "SYNCED"}}
            }],
            "disconnected_envoys": [],
            "services": [{"name": "venue", "prefixes": ["/api/v1/venues"], "instances": [{"address": "127.0.0.1", "port": 1}],
                "live_instances": [], "rejected": [{"node_id": "gw-<b>", "type": "CDS", "field": "traffic.load_balancing", "detail": "bad"}]}],
            "revocation": {"enabled": true, "entries": 0},
            "rate_limit": null,
        })
    }

    #[test]
    fn the_page_shows_the_nacked_node_with_its_entry_and_escapes_what_came_from_outside() {
        let page = render(&status());
        assert!(page.contains("<td class=\"NACKED\">NACKED</td>"), "{page}");
        assert!(page.contains("svc_venue (service venue, traffic.load_balancing)"), "{page}");
        assert!(page.contains("gw-&lt;b&gt;") && !page.contains("gw-<b>"), "node ids are escaped");
        assert!(page.contains("bad &lt;script&gt;alert(1)&lt;/script&gt;") && !page.contains("<script>"), "Envoy's detail is escaped");
        assert!(page.contains("<td class=\"NOT_SENT\">NOT_SENT</td>"), "types never sent say so");
        assert!(page.contains("<tr class=\"NACKED\"><td>venue</td>"), "the rejected service is marked");
    }

    #[test]
    fn html_escaping_covers_the_five_characters() {
        assert_eq!(escape_html("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    }
}
