//! RBAC shadow counts reported by filters (issue 15): each filter's root context posts the
//! differences it counted since its last report on its tick, over the revocation feed's
//! cluster (mutual TLS, Envoy certificates only). The control plane sums them for /status
//! and `stagedoor status`, so the counts of every Envoy are in one place without anyone
//! scraping each Envoy's admin port (which the control plane does not know).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use stagedoor_filter_core::shadow::{ShadowCount, ShadowReport};

/// A report with more labels than this, or a label longer than [`MAX_LABEL`], is refused:
/// the labels come from the registry's rules and roles, so a filter never sends more.
pub const MAX_LABELS: usize = 4096;
pub const MAX_LABEL: usize = 200;

/// The counts since this control plane started, summed over every Envoy.
#[derive(Debug, Clone, Default)]
pub struct ShadowCounts(Arc<Mutex<BTreeMap<String, ShadowCount>>>);

impl ShadowCounts {
    /// Adds one filter's report; `Err` names why it was refused.
    pub fn add(&self, report: &ShadowReport) -> Result<(), String> {
        if report.counts.len() > MAX_LABELS {
            return Err(format!("{} labels, at most {MAX_LABELS}", report.counts.len()));
        }
        if let Some(long) = report.counts.keys().find(|l| l.len() > MAX_LABEL || l.is_empty()) {
            return Err(format!("label of {} bytes, 1 to {MAX_LABEL}", long.len()));
        }
        let mut totals = self.0.lock().map_err(|_| String::from("shadow counts lock poisoned"))?;
        for (label, count) in &report.counts {
            let total = totals.entry(label.clone()).or_default();
            total.denied = total.denied.saturating_add(count.denied);
            total.allowed = total.allowed.saturating_add(count.allowed);
        }
        Ok(())
    }

    pub fn counts(&self) -> BTreeMap<String, ShadowCount> {
        self.0.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// `{label: {denied, allowed}}` for /status.
    pub fn to_json(&self) -> Value {
        let totals = self.counts();
        let by_label: serde_json::Map<String, Value> =
            totals.into_iter().map(|(label, c)| (label, json!({"denied": c.denied, "allowed": c.allowed}))).collect();
        Value::Object(by_label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(pairs: &[(&str, u64, u64)]) -> ShadowReport {
        ShadowReport {
            counts: pairs.iter().map(|(l, d, a)| ((*l).to_owned(), ShadowCount { denied: *d, allowed: *a })).collect(),
        }
    }

    #[test]
    fn reports_from_every_envoy_add_up_per_label() {
        let counts = ShadowCounts::default();
        counts.add(&report(&[("venue.reports", 2, 0)])).unwrap();
        counts.add(&report(&[("venue.reports", 3, 0), ("role.customer", 0, 1)])).unwrap();
        assert_eq!(counts.to_json(), json!({"venue.reports": {"denied": 5, "allowed": 0}, "role.customer": {"denied": 0, "allowed": 1}}));
    }

    #[test]
    fn oversized_reports_are_refused_whole() {
        let counts = ShadowCounts::default();
        let long = "x".repeat(MAX_LABEL + 1);
        assert!(counts.add(&report(&[("ok", 1, 0), (&long, 1, 0)])).is_err());
        assert_eq!(counts.to_json(), json!({}));
    }
}
