//! Where the credentials live in a credential directory (`.stagedoor/` by default), so the
//! generator, the server, the CLI, the scripts and the tests agree on one layout.

use std::path::{Path, PathBuf};

/// The default credential directory, relative to the working directory.
pub const DEFAULT_DIR: &str = ".stagedoor";

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct CredentialDir(PathBuf);

impl CredentialDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self(dir.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    fn pair(&self, stem: &str) -> Pair {
        Pair { cert: self.0.join(format!("{stem}.pem")), key: self.0.join(format!("{stem}-key.pem")) }
    }

    /// The development CA every other certificate here is signed by.
    pub fn ca(&self) -> Pair {
        self.pair("ca")
    }

    /// The control plane's server certificate (xDS, API, HTTP).
    pub fn control_plane(&self) -> Pair {
        self.pair("control-plane")
    }

    /// The gateway's HTTPS certificate at the edge (the shipped registry's `edge_tls`
    /// names it), signed by the development CA so `curl --cacert ca.pem` trusts it.
    pub fn edge(&self) -> Pair {
        self.pair("edge")
    }

    /// The operator's client certificate: every API scope.
    pub fn operator(&self) -> Pair {
        self.pair("operator")
    }

    /// An Envoy's client certificate; its URI SAN is the node id.
    pub fn envoy(&self, node_id: &str) -> Pair {
        self.pair(&format!("envoy-{node_id}"))
    }

    /// Whether the control plane's credentials are all there.
    pub fn has_server_credentials(&self) -> bool {
        let (ca, server) = (self.ca(), self.control_plane());
        ca.cert.is_file() && server.cert.is_file() && server.key.is_file()
    }
}
