//! Kids that tokens named and no key has, collected per VM for the control plane.
//!
//! A provider that rotates publishes the new key in its JWKS; the control plane fetches
//! the JWKS on a timer, so until then every token signed with the new key would be refused.
//! The filter reports each unknown kid of a JWKS issuer, and the control plane refetches at
//! once (at most once per 30 s per issuer) and pushes the new key to every Envoy.
//!
//! The request path only notes the kid here; the root context sends the batch on its next
//! tick as one callout it does not wait for. Bounded: a flood of random kids fills the batch
//! and the rest are dropped (the control plane's limiter would ignore them anyway).

use serde::Serialize;

/// At most this many distinct kids wait for the next tick.
pub const MAX_PENDING: usize = 32;

/// A kid longer than this is not reported (no provider uses one; a token may carry 8 KiB).
pub const MAX_KID_BYTES: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyReport {
    pub issuer: String,
    pub kid: String,
}

/// The body the root context posts: `{"reports":[{"issuer":..,"kid":..}]}`.
#[derive(Debug, Serialize)]
pub struct KeyReportBatch<'a> {
    pub reports: &'a [KeyReport],
}

#[derive(Debug, Default)]
pub struct KeyReports {
    pending: Vec<KeyReport>,
    dropped: u64,
}

impl KeyReports {
    /// Notes one unknown kid; a repeat, an oversize kid or one over the bound is dropped.
    pub fn note(&mut self, issuer: String, kid: String) {
        if kid.len() > MAX_KID_BYTES || issuer.len() > MAX_KID_BYTES * 4 {
            self.dropped += 1;
            return;
        }
        if self.pending.iter().any(|r| r.kid == kid && r.issuer == issuer) {
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.dropped += 1;
            return;
        }
        self.pending.push(KeyReport { issuer, kid });
    }

    /// The batch for the next callout, emptied.
    pub fn take(&mut self) -> Vec<KeyReport> {
        std::mem::take(&mut self.pending)
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Kids dropped since the VM started (over the bound or oversize).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// The JSON body for a batch.
pub fn report_body(reports: &[KeyReport]) -> Vec<u8> {
    // Plain strings cannot fail to serialize; an empty body would only be ignored.
    serde_json::to_vec(&KeyReportBatch { reports }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_bounded_and_holds_each_kid_once() {
        let mut reports = KeyReports::default();
        reports.note("idp".into(), "k1".into());
        reports.note("idp".into(), "k1".into());
        for i in 0..100 {
            reports.note("idp".into(), format!("random-{i}"));
        }
        reports.note("idp".into(), "x".repeat(MAX_KID_BYTES + 1));
        let batch = reports.take();
        assert_eq!(batch.len(), MAX_PENDING);
        assert_eq!(batch[0], KeyReport { issuer: "idp".into(), kid: "k1".into() });
        assert_eq!(reports.dropped(), 100 - (MAX_PENDING as u64 - 1) + 1);
        assert!(reports.is_empty(), "taken");
    }

    #[test]
    fn the_body_is_the_batch_as_json() {
        let body = report_body(&[KeyReport { issuer: "https://idp".into(), kid: "a\"b".into() }]);
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed, serde_json::json!({"reports": [{"issuer": "https://idp", "kid": "a\"b"}]}));
    }
}
