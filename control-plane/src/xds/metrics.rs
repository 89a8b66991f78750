//! The xDS side of /metrics: push-to-ACK time per type (a histogram), NACKs per node and
//! type, which nodes are connected, and how many Envoys are in each state per type.
//!
//! Node ids come from Envoys (and, with `--insecure`, from anyone): every label value is
//! escaped as the text format requires, and the NACK series are bounded.

use std::collections::BTreeMap;

use super::ledger::{NodeRecord, SyncState};
use crate::resources::type_url;

/// Upper bounds of the push-to-ACK buckets, in seconds.
pub const PUSH_ACK_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// NACK series kept (node x type); beyond it new ones go to a `node="(other)"` series.
const MAX_NACK_SERIES: usize = 4096;

#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    /// Observations at or under each bound of [`PUSH_ACK_BUCKETS`] (not cumulated).
    buckets: [u64; PUSH_ACK_BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(i) = PUSH_ACK_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_seconds += seconds;
    }
}

#[derive(Debug, Clone, Default)]
pub struct XdsMetrics {
    push_to_ack: BTreeMap<String, Histogram>,
    nacks: BTreeMap<(String, String), u64>,
}

/// A label value as the Prometheus text format reads it: backslash, double quote and
/// line feed escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
}

impl XdsMetrics {
    pub fn observe_push_to_ack(&mut self, type_name: &str, ms: u64) {
        self.push_to_ack.entry(type_name.to_owned()).or_default().observe(ms as f64 / 1000.0);
    }

    pub fn count_nack(&mut self, node_id: &str, type_name: &str) {
        let key = (node_id.to_owned(), type_name.to_owned());
        let key = if self.nacks.contains_key(&key) || self.nacks.len() < MAX_NACK_SERIES {
            key
        } else {
            (String::from("(other)"), type_name.to_owned())
        };
        *self.nacks.entry(key).or_default() += 1;
    }

    pub fn render(&self, nodes: &[NodeRecord], out: &mut String) {
        self.render_push_to_ack(out);
        header(out, "stagedoor_xds_nack_total", "counter", "Responses an Envoy rejected, by node and type.");
        for ((node, type_name), count) in &self.nacks {
            out.push_str(&format!("stagedoor_xds_nack_total{{node=\"{}\",type=\"{}\"}} {count}\n", escape_label(node), escape_label(type_name)));
        }
        header(out, "stagedoor_xds_connected", "gauge", "1 while the node has an open ADS stream, 0 for a recently closed one.");
        for node in nodes {
            let value = u8::from(node.is_connected());
            out.push_str(&format!("stagedoor_xds_connected{{node=\"{}\"}} {value}\n", escape_label(&node.node_id)));
        }
        header(out, "stagedoor_xds_envoys", "gauge", "Envoys per xDS type in each state (SYNCED, PENDING, NACKED, NOT_SENT, DISCONNECTED).");
        for type_url in type_url::SERVED {
            let type_name = type_url::short(type_url);
            for state in SyncState::ALL {
                let count = nodes.iter().filter(|n| n.state_of(type_name) == state).count();
                out.push_str(&format!("stagedoor_xds_envoys{{type=\"{type_name}\",state=\"{}\"}} {count}\n", state.as_str()));
            }
        }
    }

    fn render_push_to_ack(&self, out: &mut String) {
        let name = "stagedoor_xds_push_ack_seconds";
        header(out, name, "histogram", "Time from sending a response to the Envoy's ACK of it, by type.");
        for (type_name, histogram) in &self.push_to_ack {
            let type_label = escape_label(type_name);
            let mut cumulated = 0;
            for (bound, count) in PUSH_ACK_BUCKETS.iter().zip(histogram.buckets) {
                cumulated += count;
                out.push_str(&format!("{name}_bucket{{type=\"{type_label}\",le=\"{bound}\"}} {cumulated}\n"));
            }
            out.push_str(&format!("{name}_bucket{{type=\"{type_label}\",le=\"+Inf\"}} {}\n", histogram.count));
            out.push_str(&format!("{name}_sum{{type=\"{type_label}\"}} {}\n", histogram.sum_seconds));
            out.push_str(&format!("{name}_count{{type=\"{type_label}\"}} {}\n", histogram.count));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::ledger::Ledger;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("gw-1"), "gw-1");
        assert_eq!(escape_label("a\"b"), "a\\\"b");
        assert_eq!(escape_label("a\\b"), "a\\\\b");
        assert_eq!(escape_label("a\nb"), "a\\nb");
        assert_eq!(escape_label("\\\"\n"), "\\\\\\\"\\n");
    }

    #[test]
    fn a_hostile_node_id_stays_inside_its_label() {
        let node_id = "evil\"} 1\nstagedoor_fake{x=\"\\";
        let mut ledger = Ledger::default();
        ledger.connect(1, node_id, "c", "sotw", 0);
        let mut metrics = XdsMetrics::default();
        metrics.count_nack(node_id, "CDS");
        let mut out = String::new();
        metrics.render(&ledger.nodes(), &mut out);
        assert!(out.lines().all(|line| !line.starts_with("stagedoor_fake")), "no injected series:\n{out}");
        assert!(out.contains(r#"stagedoor_xds_nack_total{node="evil\"} 1\nstagedoor_fake{x=\"\\",type="CDS"} 1"#), "{out}");
        assert!(out.contains(r#"stagedoor_xds_connected{node="evil\"} 1\nstagedoor_fake{x=\"\\"} 1"#), "{out}");
    }

    #[test]
    fn the_push_to_ack_histogram_is_cumulative_and_states_are_counted() {
        let mut ledger = Ledger::default();
        ledger.connect(1, "gw-1", "c", "sotw", 0);
        ledger.connect(2, "gw-2", "c", "sotw", 0);
        ledger.sent(1, "CDS", "v1", "1", 1, 0);
        ledger.sent(2, "CDS", "v1", "1", 1, 0);
        ledger.ack(1, "CDS", "v1", "1", &[], 3);
        let mut metrics = XdsMetrics::default();
        metrics.observe_push_to_ack("CDS", 3);
        metrics.observe_push_to_ack("CDS", 20_000);
        let mut out = String::new();
        metrics.render(&ledger.nodes(), &mut out);
        assert!(out.contains("stagedoor_xds_push_ack_seconds_bucket{type=\"CDS\",le=\"0.001\"} 0\n"), "{out}");
        assert!(out.contains("stagedoor_xds_push_ack_seconds_bucket{type=\"CDS\",le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("stagedoor_xds_push_ack_seconds_bucket{type=\"CDS\",le=\"10\"} 1\n"), "{out}");
        assert!(out.contains("stagedoor_xds_push_ack_seconds_bucket{type=\"CDS\",le=\"+Inf\"} 2\n"), "{out}");
        assert!(out.contains("stagedoor_xds_push_ack_seconds_count{type=\"CDS\"} 2\n"), "{out}");
        assert!(out.contains("stagedoor_xds_envoys{type=\"CDS\",state=\"SYNCED\"} 1\n"), "{out}");
        assert!(out.contains("stagedoor_xds_envoys{type=\"CDS\",state=\"PENDING\"} 1\n"), "{out}");
        assert!(out.contains("stagedoor_xds_envoys{type=\"LDS\",state=\"NOT_SENT\"} 2\n"), "{out}");
    }

    #[test]
    fn nack_series_are_bounded() {
        let mut metrics = XdsMetrics::default();
        for i in 0..(MAX_NACK_SERIES + 10) {
            metrics.count_nack(&format!("gw-{i}"), "CDS");
        }
        assert_eq!(metrics.nacks.len(), MAX_NACK_SERIES + 1);
        assert_eq!(metrics.nacks.get(&(String::from("(other)"), String::from("CDS"))), Some(&10));
    }
}
