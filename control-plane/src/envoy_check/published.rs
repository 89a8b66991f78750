//! For the end-to-end suite (issue 16: every snapshot the tests push validated by Envoy):
//! with `serve --test-bootstrap-dir DIR`, each snapshot `serve` publishes is written to DIR
//! as the static bootstrap `validate --envoy` runs (bootstrap.rs), decoded from the very
//! resources the streams send, so what is checked is what the Envoys were given. The test
//! harness runs `envoy --mode validate` on each file it has not validated before when the
//! control plane stops (tests/src/published.rs).
//!
//! Files are named by a hash of their bytes in an order-insensitive form (canonical.rs:
//! prost re-encodes decoded maps in random order), so the same snapshot published twice, or by
//! two tests, is one file and one Envoy run. To make that hold across tests, what differs
//! between test stacks without changing what Envoy accepts is made equal: listener ports
//! become 10000 + their index (two listeners must not share an address), endpoint ports
//! 20000 + theirs, and the Envoy identity is named by relative paths under `identity/` (the
//! harness runs Envoy in a directory that has them); the name leaves out the contents of
//! the secrets (each stack's own generated certificates, see `file_key`). Ports, and the
//! certificates of every stack but the first with a given snapshot, are what Envoy is not
//! asked about.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::core::v3::{address, socket_address, Address};
use prost::Message;
use tokio::sync::watch;

use super::bootstrap::{static_bootstrap, BootstrapError, Identity, Scope};
use crate::resources::type_url;
use crate::shutdown::Stop;
use crate::snapshot::Snapshot;
use crate::translate::Resources;

/// Where the harness puts the throwaway Envoy identity, relative to Envoy's working directory.
pub const IDENTITY_DIR: &str = "identity";
pub const IDENTITY_NODE: &str = "validate";

#[derive(Debug, thiserror::Error)]
pub enum PublishedError {
    #[error("{type_url} resource {name}: does not decode: {source}")]
    Decode { type_url: String, name: String, source: prost::DecodeError },
    #[error("the snapshot as a static bootstrap: {0}")]
    Bootstrap(#[from] BootstrapError),
    #[error("{path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// The relative identity paths the written bootstraps name (`stagedoor certs init` and
/// `certs envoy --node-id validate` in `identity/`).
pub fn relative_identity() -> Identity {
    let dir = Path::new(IDENTITY_DIR);
    Identity {
        certificate: dir.join(format!("envoy-{IDENTITY_NODE}.pem")),
        key: dir.join(format!("envoy-{IDENTITY_NODE}-key.pem")),
        ca: dir.join("ca.pem"),
    }
}

/// The snapshot's resources decoded, type by type, as the streams send them.
pub fn resources_of(snapshot: &Snapshot) -> Result<Resources, PublishedError> {
    fn decoded<T: Message + Default>(snapshot: &Snapshot, url: &str) -> Result<Vec<T>, PublishedError> {
        let Some(typed) = snapshot.types.get(url) else { return Ok(Vec::new()) };
        typed
            .resources
            .iter()
            .map(|(name, any)| {
                T::decode(any.value.as_slice()).map_err(|source| PublishedError::Decode { type_url: url.to_owned(), name: name.clone(), source })
            })
            .collect()
    }
    Ok(Resources {
        clusters: decoded(snapshot, type_url::CLUSTER)?,
        endpoints: decoded(snapshot, type_url::ENDPOINT)?,
        listeners: decoded(snapshot, type_url::LISTENER)?,
        routes: decoded(snapshot, type_url::ROUTE)?,
        extension_configs: decoded(snapshot, type_url::EXTENSION_CONFIG)?,
        secrets: decoded(snapshot, type_url::SECRET)?,
    })
}

/// The bootstrap of `resources` with the per-stack ports made equal (see the module doc).
pub fn comparable_bootstrap(resources: &Resources) -> Result<Bootstrap, PublishedError> {
    let mut bootstrap = static_bootstrap(resources, &relative_identity(), Scope::Everything)?;
    if let Some(statics) = bootstrap.static_resources.as_mut() {
        for (i, listener) in statics.listeners.iter_mut().enumerate() {
            set_port(listener.address.as_mut(), 10_000 + i as u32);
        }
        let endpoints = statics.clusters.iter_mut().filter_map(|c| c.load_assignment.as_mut()).flat_map(|a| a.endpoints.iter_mut());
        let hosts = endpoints.flat_map(|e| e.lb_endpoints.iter_mut()).filter_map(|lb| match lb.host_identifier.as_mut() {
            Some(envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier::Endpoint(endpoint)) => endpoint.address.as_mut(),
            _ => None,
        });
        for (i, host) in hosts.enumerate() {
            set_port(Some(host), 20_000 + i as u32);
        }
    }
    Ok(bootstrap)
}

fn set_port(address: Option<&mut Address>, port: u32) {
    if let Some(Address { address: Some(address::Address::SocketAddress(socket)) }) = address {
        socket.port_specifier = Some(socket_address::PortSpecifier::PortValue(port));
    }
}

/// What names the file: the bootstrap with the contents of its secrets left out. Every test
/// stack makes its own CA and certificates (`stagedoor certs init`), which the snapshot
/// carries inline; with them in the name no two stacks would share a file. The file keeps
/// them, so the first stack's certificates are the ones Envoy is shown.
fn file_key(bootstrap: &Bootstrap) -> String {
    let mut keyed = bootstrap.clone();
    if let Some(statics) = keyed.static_resources.as_mut() {
        for secret in &mut statics.secrets {
            let name = secret.name.clone();
            let kind = match &secret.r#type {
                Some(envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::secret::Type::TlsCertificate(_)) => "certificate",
                Some(envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::secret::Type::ValidationContext(_)) => "validation context",
                _ => "other",
            };
            *secret = envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret { name: format!("{name} ({kind})"), r#type: None };
        }
    }
    // Canonical: prost re-encodes decoded maps in a different order every time.
    crate::hash::sha256_hex(&super::canonical::canonical(&keyed.encode_to_vec()))
}

/// Writes the snapshot's comparable bootstrap to `dir/<key>.pb` unless it is there; its path.
pub fn write(dir: &Path, snapshot: &Snapshot) -> Result<PathBuf, PublishedError> {
    let bootstrap = comparable_bootstrap(&resources_of(snapshot)?)?;
    let bytes = bootstrap.encode_to_vec();
    let path = dir.join(format!("{}.pb", file_key(&bootstrap)));
    if path.exists() {
        return Ok(path);
    }
    let tmp = path.with_extension("writing");
    let io = |source| PublishedError::Write { path: path.clone(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, &path)).map_err(io)?;
    Ok(path)
}

/// Until the stop: every snapshot published (the first included) written to `dir`. A
/// failure is logged and the next snapshot tried: this serves the tests, not the Envoys.
pub async fn write_each(dir: PathBuf, mut snapshots: watch::Receiver<Arc<Snapshot>>, stop: Stop) {
    loop {
        let snapshot = snapshots.borrow_and_update().clone();
        let (dir_for_write, version) = (dir.clone(), snapshot.version.clone());
        match tokio::task::spawn_blocking(move || write(&dir_for_write, &snapshot)).await {
            Ok(Ok(path)) => tracing::debug!(%version, path = %path.display(), "published snapshot written for envoy --mode validate"),
            Ok(Err(e)) => tracing::warn!(%version, error = %e, "published snapshot not written for envoy --mode validate"),
            Err(e) => tracing::warn!(%version, error = %e, "writing the published snapshot failed"),
        }
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { return },
            () = stop.clone().requested() => return,
        }
    }
}
