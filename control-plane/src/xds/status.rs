//! Which Envoy runs which config: per connected stream, the node, and per type the version
//! last sent, last ACKed, and the last NACK with Envoy's error detail.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use crate::clock::unix_ms;

use serde::Serialize;

use super::step::StreamEvent;
use crate::resources::type_url;

#[derive(Debug, Clone, Default, Serialize)]
pub struct TypeStatus {
    pub acked_version: Option<String>,
    pub last_nack: Option<Nack>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Nack {
    pub version: String,
    pub nonce: String,
    pub detail: String,
    pub at_unix_ms: u128,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnvoyStatus {
    pub stream_id: u64,
    pub node_id: String,
    pub node_cluster: String,
    pub protocol: &'static str,
    pub connected_at_unix_ms: u128,
    /// Keyed by short type name: CDS, EDS, LDS, RDS.
    pub types: BTreeMap<String, TypeStatus>,
}

/// Shared between every stream and the status endpoints.
#[derive(Debug, Clone, Default)]
pub struct EnvoyRegistry {
    inner: Arc<Mutex<BTreeMap<u64, EnvoyStatus>>>,
}

impl EnvoyRegistry {
    pub fn connect(&self, stream_id: u64, node_id: &str, node_cluster: &str, protocol: &'static str) {
        if let Ok(mut map) = self.inner.lock() {
            map.insert(
                stream_id,
                EnvoyStatus {
                    stream_id,
                    node_id: node_id.to_owned(),
                    node_cluster: node_cluster.to_owned(),
                    protocol,
                    connected_at_unix_ms: unix_ms(),
                    types: BTreeMap::new(),
                },
            );
        }
    }

    pub fn disconnect(&self, stream_id: u64) {
        if let Ok(mut map) = self.inner.lock() {
            map.remove(&stream_id);
        }
    }

    pub fn record(&self, stream_id: u64, event: &StreamEvent) {
        let Ok(mut map) = self.inner.lock() else { return };
        let Some(status) = map.get_mut(&stream_id) else { return };
        match event {
            StreamEvent::Ack { type_url, version } => {
                let entry = status.types.entry(type_url::short(type_url).to_owned()).or_default();
                entry.acked_version = Some(version.clone());
            }
            StreamEvent::Nack { type_url, version, nonce, detail } => {
                crate::metrics::bump(&crate::metrics::NACKS);
                let entry = status.types.entry(type_url::short(type_url).to_owned()).or_default();
                entry.last_nack = Some(Nack {
                    version: version.clone(),
                    nonce: nonce.clone(),
                    detail: detail.clone(),
                    at_unix_ms: unix_ms(),
                });
            }
        }
    }

    pub fn list(&self) -> Vec<EnvoyStatus> {
        self.inner.lock().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }
}
