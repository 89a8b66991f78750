//! The process call: the static bootstrap written to a throwaway directory as binary
//! protobuf (`.pb`, which Envoy reads as such), `envoy --mode validate -c` on it, and
//! Envoy's refusal traced to the registry.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;

use super::bootstrap::{static_bootstrap, BootstrapError, Identity, Scope};
use super::refusal::{culprits, reason, Culprit};
use crate::translate::origins::Origins;
use crate::translate::Resources;

/// Envoy loads and compiles the filter's module in validate mode (seconds); a run that
/// takes longer than this is stuck.
const ENVOY_VALIDATE_LIMIT: Duration = Duration::from_secs(120);
const NODE_ID: &str = "validate";

#[derive(Debug, thiserror::Error)]
pub enum EnvoyCheckError {
    #[error("no envoy binary on PATH: install Envoy 1.40 (scripts/bootstrap.sh) or name one with --envoy-bin PATH")]
    NoEnvoy,
    #[error("--envoy-bin {0}: no such file")]
    NotFound(PathBuf),
    #[error("the snapshot as a static bootstrap: {0}")]
    Bootstrap(#[from] BootstrapError),
    #[error("the throwaway Envoy identity: {0}")]
    Identity(#[from] crate::tls::TlsError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Refused(Refusal),
}

/// Envoy refused the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Envoy's message, verbatim.
    pub reason: String,
    /// The resources the message names, with their registry entries.
    pub culprits: Vec<Culprit>,
    /// When it names none: which part Envoy refuses, from a second run on the clusters alone.
    pub narrowed: Option<String>,
    /// The message names the filter's module (`--wasm`), not the registry.
    pub names_module: Option<String>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Envoy refuses the snapshot: {}", self.reason)?;
        for culprit in &self.culprits {
            write!(f, "\n  from {culprit}")?;
        }
        if let Some(module) = &self.names_module {
            write!(f, "\n  from the filter's module {module} (--wasm), not the registry")?;
        }
        if let Some(narrowed) = &self.narrowed {
            write!(f, "\n  {narrowed}")?;
        }
        Ok(())
    }
}

/// `explicit`, or `envoy` on PATH.
pub fn find_envoy(explicit: Option<&Path>) -> Result<PathBuf, EnvoyCheckError> {
    if let Some(path) = explicit {
        return if path.is_file() { Ok(path.to_owned()) } else { Err(EnvoyCheckError::NotFound(path.to_owned())) };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join("envoy")).find(|candidate| candidate.is_file()).ok_or(EnvoyCheckError::NoEnvoy)
}

/// Runs `envoy --mode validate` on the snapshot; Envoy's own words on success.
pub fn check(envoy: &Path, resources: &Resources, origins: &Origins, wasm_path: &str) -> Result<String, EnvoyCheckError> {
    let dir = ThrowawayDir::new()?;
    let credentials = crate::tls::files::CredentialDir::new(dir.0.clone());
    let request = crate::tls::generate::InitRequest { sans: &[], node_id: NODE_ID, operator: NODE_ID, force: true };
    crate::tls::generate::init(&credentials, &request)?;
    let (pair, ca) = (credentials.envoy(NODE_ID), credentials.ca());
    let identity = Identity { certificate: pair.cert, key: pair.key, ca: ca.cert };
    let (passed, output) = validate(envoy, &dir.0, &static_bootstrap(resources, &identity, Scope::Everything)?)?;
    if passed {
        return Ok(output.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("OK").trim().to_owned());
    }
    let reason = reason(&output).unwrap_or_else(|| output.trim().to_owned());
    let culprits = culprits(&reason, resources, origins);
    let names_module = reason.contains(wasm_path).then(|| wasm_path.to_owned());
    let (mut culprits, mut narrowed) = (culprits, None);
    if culprits.is_empty() && names_module.is_none() {
        let (clusters_pass, _) = validate(envoy, &dir.0, &static_bootstrap(resources, &identity, Scope::ClustersOnly)?)?;
        if clusters_pass {
            narrowed = Some(String::from(LISTENER_SIDE));
        } else {
            culprits = refused_clusters(envoy, &dir.0, resources, origins, &identity)?;
            narrowed = Some(String::from("the message names no resource; Envoy refuses the clusters above on their own"));
        }
    }
    Err(EnvoyCheckError::Refused(Refusal { reason, culprits, narrowed, names_module }))
}

/// When the clusters alone pass: what else the snapshot has, and the registry behind it.
const LISTENER_SIDE: &str = "the message names no resource; the clusters and secrets alone pass, so a listener, the routes or the filter config is refused (registry: services[].routes, services[].traffic, cors, rate_limit, global_rate_limits, edge_tls, and the filter's fields)";
/// One validate run per cluster (fractions of a second each, no filter module) finds the
/// refused ones; a registry with more clusters is not searched past these.
const CLUSTERS_SEARCHED: usize = 64;

/// The clusters Envoy refuses on their own.
fn refused_clusters(envoy: &Path, dir: &Path, resources: &Resources, origins: &Origins, identity: &Identity) -> Result<Vec<Culprit>, EnvoyCheckError> {
    let mut refused = Vec::new();
    for (i, cluster) in resources.clusters.iter().enumerate().take(CLUSTERS_SEARCHED) {
        let (passed, _) = validate(envoy, dir, &static_bootstrap(resources, identity, Scope::OneCluster(i))?)?;
        if !passed {
            let entry = crate::translate::origins::origin_of(origins, crate::resources::type_url::CLUSTER, &cluster.name);
            refused.push(Culprit { type_name: "CDS", resource: cluster.name.clone(), entry });
        }
    }
    Ok(refused)
}

/// One `envoy --mode validate` run: whether it passed, and its output (stdout and stderr).
fn validate(envoy: &Path, dir: &Path, bootstrap: &envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap) -> Result<(bool, String), EnvoyCheckError> {
    let io = |what: String| move |source| EnvoyCheckError::Io { what, source };
    let file = dir.join("bootstrap.pb");
    std::fs::write(&file, bootstrap.encode_to_vec()).map_err(io(format!("write {}", file.display())))?;
    let log = dir.join("envoy.log");
    let log_file = std::fs::File::create(&log).map_err(io(format!("create {}", log.display())))?;
    let log_err = log_file.try_clone().map_err(io(format!("open {}", log.display())))?;
    let mut child = Command::new(envoy)
        .args(["--mode", "validate", "-c"])
        .arg(&file)
        .args(["-l", "warning"])
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .map_err(io(format!("run {}", envoy.display())))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io(format!("wait for {}", envoy.display())))? {
            break Some(status);
        }
        if started.elapsed() > ENVOY_VALIDATE_LIMIT {
            // Only the child this call started.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&log).map_err(io(format!("read {}", log.display())))?;
    match status {
        Some(status) => Ok((status.success(), output)),
        None => Ok((false, format!("{output}\n[timeout] envoy --mode validate did not finish in {ENVOY_VALIDATE_LIMIT:?}"))),
    }
}

/// A directory under the system's temporary one, removed when dropped.
struct ThrowawayDir(PathBuf);

impl ThrowawayDir {
    fn new() -> Result<Self, EnvoyCheckError> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("stagedoor-validate-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|source| EnvoyCheckError::Io { what: format!("create {}", dir.display()), source })?;
        Ok(Self(dir))
    }
}

impl Drop for ThrowawayDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
