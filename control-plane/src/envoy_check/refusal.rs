//! Envoy's refusal, read from its validate-mode output, and traced to the registry: every
//! resource Envoy's message names (as a whole word) is looked up in the origins map.

use std::fmt;

use crate::resources::type_url;
use crate::translate::origins::{origin_of, Origins};
use crate::translate::Resources;
use crate::xds::ledger::{names_resource, RegistryEntry};

/// Where Envoy's validate mode puts its reason, after the file's name in quotes.
const REFUSAL_MARK: &str = "error initializing configuration '";
/// Where protobuf's debug dump of a refused message starts (abseil marks debug strings so).
const DUMP_MARK: &str = "goo.gle/debug";
/// A dump up to this many lines stays in the reason (`seconds: 400000000000000` says what
/// is wrong); a longer one is the whole refused message and is left out.
const DUMP_KEPT_LINES: usize = 3;

/// Envoy's reason for refusing, verbatim: the text after `error initializing configuration
/// '<file>': ` up to the next log line (a message can span lines), else the message of the
/// last critical line. None when the output has neither.
pub fn reason(output: &str) -> Option<String> {
    let lines: Vec<&str> = output.lines().collect();
    let is_log_line = |line: &str| line.starts_with('[');
    if let Some(at) = lines.iter().rposition(|l| l.contains(REFUSAL_MARK)) {
        let (_, rest) = lines[at].split_once(REFUSAL_MARK)?;
        let first = rest.split_once("': ").map_or(rest, |(_, message)| message);
        let continued = lines[at + 1..].iter().take_while(|l| !is_log_line(l)).copied();
        let message: Vec<&str> = std::iter::once(first).chain(continued).collect();
        return Some(without_dumps(&message.join("\n")));
    }
    let critical = lines.iter().rev().find(|l| l.contains("[critical]"))?;
    Some(without_dumps(critical.rsplit_once("] ").map_or(*critical, |(_, message)| message)))
}

/// The reason with protobuf's debug dumps of the refused message left out (they name every
/// resource of the message, so they would name them all as culprits): a dump runs from its
/// mark to a line starting `: ` (where Envoy's own words go on) or to the end.
fn without_dumps(reason: &str) -> String {
    let mut out = String::new();
    let mut rest = reason;
    while let Some(at) = rest.find(DUMP_MARK) {
        out.push_str(&rest[..at]);
        let after_mark = &rest[at..];
        let dump_start = after_mark.find('\n').map_or(after_mark.len(), |n| n + 1);
        let (dump, continued) = match after_mark[dump_start..].find("\n: ") {
            Some(end) => (&after_mark[dump_start..dump_start + end], &after_mark[dump_start + end + 1..]),
            None => (&after_mark[dump_start..], ""),
        };
        let lines: Vec<&str> = dump.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        if lines.len() <= DUMP_KEPT_LINES {
            out.push_str(&lines.join(" "));
        }
        rest = continued;
    }
    out.push_str(rest);
    let tidy: Vec<&str> = out.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
    tidy.join("\n").trim().trim_start_matches(": ").to_owned()
}

/// The index after `field[` in `reason`, as protobuf-validate writes a repeated field.
fn index_after(reason: &str, field: &str) -> Option<usize> {
    let at = reason.find(field)? + field.len();
    let digits: String = reason[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Culprits from the field path of a proto-constraint refusal: `Clusters[i]` and
/// `Listeners[i]` of the bootstrap (in the snapshot's order), `VirtualHosts[v]` and
/// `Routes[r]` of a route configuration.
fn indexed(reason: &str, resources: &Resources, origins: &Origins) -> Vec<Culprit> {
    let mut found = Vec::new();
    if let Some(cluster) = index_after(reason, "StaticResourcesValidationError.Clusters[").and_then(|i| resources.clusters.get(i)) {
        found.push(Culprit { type_name: "CDS", resource: cluster.name.clone(), entry: origin_of(origins, type_url::CLUSTER, &cluster.name) });
    }
    if let Some(listener) = index_after(reason, "StaticResourcesValidationError.Listeners[").and_then(|i| resources.listeners.get(i)) {
        found.push(Culprit { type_name: "LDS", resource: listener.name.clone(), entry: origin_of(origins, type_url::LISTENER, &listener.name) });
    }
    let (Some(host), Some(route)) = (
        index_after(reason, "RouteConfigurationValidationError.VirtualHosts["),
        index_after(reason, "VirtualHostValidationError.Routes["),
    ) else {
        return found;
    };
    let named = resources.routes.iter().filter_map(|c| c.virtual_hosts.get(host)).find_map(|v| v.routes.get(route));
    if let Some(mut entry) = named.and_then(|r| route_entry(&r.name)) {
        if let Some((_, field)) = ROUTE_FIELDS.iter().find(|(part, _)| reason.contains(part)) {
            (*field).clone_into(&mut entry.field);
        }
        found.push(Culprit { type_name: "RDS", resource: named.map(|r| r.name.clone()).unwrap_or_default(), entry: Some(entry) });
    }
    found
}

/// The registry field behind a part of a route action, as route.rs makes it.
const ROUTE_FIELDS: [(&str, &str); 4] = [
    ("RouteActionValidationError.HashPolicy", "traffic.load_balancing"),
    ("RouteActionValidationError.RetryPolicy", "traffic.retries"),
    ("RouteActionValidationError.Timeout", "traffic.timeout_ms"),
    ("RouteValidationError.Match", "routes"),
];

/// A route's name is `service:prefix:kind` (route.rs).
fn route_entry(name: &str) -> Option<RegistryEntry> {
    let mut parts = name.splitn(3, ':');
    let (service, prefix) = (parts.next()?, parts.next()?);
    Some(RegistryEntry { service: Some(service.to_owned()), route: Some(prefix.to_owned()), field: String::from("routes") })
}

/// A resource Envoy's message names, and the registry entry it is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Culprit {
    /// CDS, EDS, LDS, RDS, ECDS, SDS.
    pub type_name: &'static str,
    pub resource: String,
    /// None for the control plane's own resources.
    pub entry: Option<RegistryEntry>,
}

impl fmt::Display for Culprit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.type_name, self.resource)?;
        let Some(entry) = &self.entry else { return write!(f, " (the control plane's own, not the registry's)") };
        let mut parts = Vec::new();
        if let Some(service) = &entry.service {
            parts.push(format!("service {service}"));
        }
        if let Some(route) = &entry.route {
            parts.push(format!("route {route}"));
        }
        parts.push(entry.field.clone());
        write!(f, " ({})", parts.join(", "))
    }
}

/// The resources of the snapshot `reason` is about, with their registry entries: those its
/// proto-constraint field path points at, else every one it names; a route's name
/// (`service:prefix:kind`, route.rs) gives its service and prefix.
pub fn culprits(reason: &str, resources: &Resources, origins: &Origins) -> Vec<Culprit> {
    let by_index = indexed(reason, resources, origins);
    if !by_index.is_empty() {
        return by_index;
    }
    let mut found = Vec::new();
    let mut add = |type_url: &'static str, name: &str| {
        if names_resource(reason, name) {
            found.push(Culprit { type_name: type_url::short(type_url), resource: name.to_owned(), entry: origin_of(origins, type_url, name) });
        }
    };
    resources.clusters.iter().for_each(|c| add(type_url::CLUSTER, &c.name));
    resources.endpoints.iter().for_each(|e| add(type_url::ENDPOINT, &e.cluster_name));
    resources.listeners.iter().for_each(|l| add(type_url::LISTENER, &l.name));
    resources.routes.iter().for_each(|r| add(type_url::ROUTE, &r.name));
    resources.extension_configs.iter().for_each(|e| add(type_url::EXTENSION_CONFIG, &e.name));
    resources.secrets.iter().for_each(|s| add(type_url::SECRET, &s.name));
    let routes = resources.routes.iter().flat_map(|r| &r.virtual_hosts).flat_map(|v| &v.routes);
    for route in routes.filter(|r| !r.name.is_empty() && reason.contains(r.name.as_str())) {
        found.push(Culprit { type_name: "RDS", resource: route.name.clone(), entry: route_entry(&route.name) });
    }
    found
}
