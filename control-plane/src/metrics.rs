//! Control-plane counters for /metrics (Prometheus text format).

use std::sync::atomic::{AtomicU64, Ordering};

pub static NACKS: AtomicU64 = AtomicU64::new(0);
pub static REGISTRY_EDITS_APPLIED: AtomicU64 = AtomicU64::new(0);
pub static REGISTRY_EDITS_REJECTED: AtomicU64 = AtomicU64::new(0);
pub static SNAPSHOTS_PUBLISHED: AtomicU64 = AtomicU64::new(0);
/// TLS handshakes refused for the client's certificate (not the CA's, expired, ...).
pub static CLIENT_CERTIFICATES_REFUSED: AtomicU64 = AtomicU64::new(0);
/// ADS streams refused for the new-stream rate (`--max-new-xds-streams-per-second`).
pub static XDS_STREAMS_REFUSED: AtomicU64 = AtomicU64::new(0);
/// gRPC-port connections that waited for admission to their handshake (tls/admission.rs).
pub static XDS_CONNECTIONS_QUEUED: AtomicU64 = AtomicU64::new(0);
/// ... whose client left while they waited (dropped unhandshaken).
pub static XDS_CONNECTIONS_ABANDONED: AtomicU64 = AtomicU64::new(0);
/// ... closed unhandshaken because the admission queue was full (its oldest).
pub static XDS_CONNECTIONS_CLOSED_QUEUE_FULL: AtomicU64 = AtomicU64::new(0);
/// Background tasks that died and were started again (see supervise.rs).
pub static TASK_RESTARTS: AtomicU64 = AtomicU64::new(0);
/// Key sets fetched from a JWKS URL that changed the keys Envoys get (see jwks/).
pub static JWKS_KEY_SETS_PUBLISHED: AtomicU64 = AtomicU64::new(0);
/// Unknown-kid reports from filters (see jwks/limiter.rs for what they may cost).
pub static JWKS_UNKNOWN_KID_REPORTS: AtomicU64 = AtomicU64::new(0);
/// Token endpoint: refreshes answered with a pair (rotations and grace replays).
pub static REFRESH_ROTATIONS: AtomicU64 = AtomicU64::new(0);
/// Token endpoint: refresh tokens reused, each revoking its family (a security event).
pub static REFRESH_REUSE_DETECTED: AtomicU64 = AtomicU64::new(0);
pub static LOGOUTS: AtomicU64 = AtomicU64::new(0);
/// Live instances the last snapshot left out for their service's limit (a gauge).
pub static LIVE_INSTANCES_OVER_LIMIT: AtomicU64 = AtomicU64::new(0);

pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// One metric in the text format, with its HELP and TYPE lines.
pub fn write(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, f64)]) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    for (labels, value) in samples {
        out.push_str(&format!("{name}{labels} {value}\n"));
    }
}

pub fn counter_value(counter: &AtomicU64) -> f64 {
    counter.load(Ordering::Relaxed) as f64
}
