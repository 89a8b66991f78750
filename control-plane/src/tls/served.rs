//! The control plane's TLS server configurations in use, replaceable while serving: every
//! handshake (xDS and API on the gRPC port, /status and the feed on the HTTP side) takes
//! the configuration current at its start, so new credentials apply from the next
//! handshake and connections already open keep the ones they were made with.

use std::sync::Arc;

use tokio::sync::watch;

use super::load::{server_config, Credentials};
use super::TlsError;

/// ALPN per side: gRPC is HTTP/2 only, the HTTP side (axum here) HTTP/1.1 only.
const GRPC_ALPN: &[&[u8]] = &[b"h2"];
const HTTP_ALPN: &[&[u8]] = &[b"http/1.1"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Grpc,
    Http,
}

/// Both sides' configurations, built from one set of credentials, and that set's PEM (for
/// the expiry report).
pub struct ServedConfigs {
    pub grpc: Arc<rustls::ServerConfig>,
    pub http: Arc<rustls::ServerConfig>,
    pub cert_pem: String,
    pub ca_pem: String,
}

impl ServedConfigs {
    fn build(credentials: &Credentials) -> Result<Self, TlsError> {
        Ok(Self {
            grpc: server_config(credentials, GRPC_ALPN)?,
            http: server_config(credentials, HTTP_ALPN)?,
            cert_pem: credentials.cert_pem.clone(),
            ca_pem: credentials.ca_pem.clone(),
        })
    }

    pub fn side(&self, side: Side) -> Arc<rustls::ServerConfig> {
        match side {
            Side::Grpc => self.grpc.clone(),
            Side::Http => self.http.clone(),
        }
    }
}

/// The configurations being served. Cloned handles share them.
#[derive(Clone)]
pub struct ServedTls {
    current: Arc<watch::Sender<Arc<ServedConfigs>>>,
}

impl ServedTls {
    pub fn new(credentials: &Credentials) -> Result<Self, TlsError> {
        let (current, _) = watch::channel(Arc::new(ServedConfigs::build(credentials)?));
        Ok(Self { current: Arc::new(current) })
    }

    /// Builds both sides' configurations first: credentials either side refuses change
    /// nothing.
    pub fn replace(&self, credentials: &Credentials) -> Result<(), TlsError> {
        let built = Arc::new(ServedConfigs::build(credentials)?);
        self.current.send_replace(built);
        Ok(())
    }

    pub fn current(&self) -> Arc<ServedConfigs> {
        self.current.borrow().clone()
    }
}
