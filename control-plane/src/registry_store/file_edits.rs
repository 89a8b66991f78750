//! With --redis, an edit to this machine's registry file is an apply through this replica:
//! validated, then written to Redis with compare-and-set on the version served here, so
//! every replica serves it. The file as it stands at start is only the seed (it may be an
//! older copy than Redis's): edits made after start count, never its first read.

use super::follow::RegistryStore;
use super::{store, StoreError, Written};
use crate::registry::Registry;
use crate::shared_publisher::SharedPublisher;

/// Validates `registry` as the API does, writes it to Redis based on the version served
/// here, and serves it here at once (the follower then finds it served).
pub async fn apply_file_edit(store: &RegistryStore, publisher: &SharedPublisher, registry: Registry, yaml: &str, file: &str, base: u64) -> Result<Written, String> {
    let view = publisher.view();
    crate::shared_publisher::off_the_workers(|| {
        crate::publish::build_snapshot(&registry, &view.live, &[], &view.options, Some(&view.snapshot))
    })
    .map_err(|e| e.to_string())?;
    let mut conn = store::connect(&store.url).await.map_err(|e| format!("redis: {e}"))?;
    let written = store::write(&mut conn, base, &registry.version, yaml, &format!("file:{file}"), store.keep)
        .await
        .map_err(|e: StoreError| e.to_string())?;
    let version = match written {
        Written::New(v) | Written::Unchanged(v) => v,
    };
    publisher.update(|p| p.apply(registry)).await.map_err(|e| e.to_string())?;
    store.status.update(|s| {
        s.served_version = version;
        s.latest_version = s.latest_version.max(version);
        s.error = None;
    });
    Ok(written)
}
