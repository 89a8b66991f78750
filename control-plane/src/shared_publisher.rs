//! The publisher as the rest of the process shares it: one writer at a time, readers never.
//!
//! Translation is CPU work (0.4 s at 10,000 services). Done on a runtime worker inside a
//! lock every reader takes, it stalled /status, the API and every ADS stream's wake-up on
//! the two workers. So writers run their update with the runtime told to move its other
//! tasks elsewhere (`block_in_place`), and readers borrow what was last published from a
//! watch channel: the registry, the live instances and the snapshot, all behind `Arc`s.

use std::sync::Arc;

use tokio::sync::{watch, Mutex};

use crate::registry::LiveInstances;
use crate::publish::Publisher;
use crate::registry::Registry;
use crate::snapshot::Snapshot;
use crate::translate::TranslateOptions;

/// What was last published, for readers.
#[derive(Debug)]
pub struct PublishedView {
    pub registry: Arc<Registry>,
    pub live: Arc<LiveInstances>,
    pub snapshot: Arc<Snapshot>,
    pub options: Arc<TranslateOptions>,
}

#[derive(Clone)]
pub struct SharedPublisher {
    writer: Arc<Mutex<Publisher>>,
    view_tx: Arc<watch::Sender<Arc<PublishedView>>>,
    view: watch::Receiver<Arc<PublishedView>>,
}

fn view_of(publisher: &Publisher) -> Arc<PublishedView> {
    Arc::new(PublishedView {
        registry: Arc::new(publisher.registry().clone()),
        live: Arc::new(publisher.live().clone()),
        snapshot: publisher.current(),
        options: Arc::new(publisher.options().clone()),
    })
}

impl SharedPublisher {
    pub fn new(publisher: Publisher) -> Self {
        let (view_tx, view) = watch::channel(view_of(&publisher));
        Self { writer: Arc::new(Mutex::new(publisher)), view_tx: Arc::new(view_tx), view }
    }

    /// Follows what is published (the JWKS fetcher watches the registry's sources).
    pub fn subscribe(&self) -> watch::Receiver<Arc<PublishedView>> {
        self.view.clone()
    }

    /// What was last published; never waits for a writer.
    pub fn view(&self) -> Arc<PublishedView> {
        self.view.borrow().clone()
    }

    /// Runs `update` as the one writer, off the async workers, then publishes the view.
    pub async fn update<T>(&self, update: impl FnOnce(&mut Publisher) -> T) -> T {
        let mut publisher = self.writer.lock().await;
        let current = self.view();
        let (result, view) = off_the_workers(|| {
            let result = update(&mut publisher);
            let changed = current.registry.version != publisher.registry().version
                || *current.live != *publisher.live()
                || current.snapshot.version != publisher.current().version;
            (result, changed.then(|| view_of(&publisher)))
        });
        if let Some(view) = view {
            self.view_tx.send_replace(view);
        }
        result
    }
}

/// Runs CPU-heavy work without holding up the runtime's other tasks: on the multi-thread
/// runtime `serve` uses, the worker hands its tasks to another thread first; elsewhere
/// (a current-thread test runtime) it simply runs.
pub fn off_the_workers<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher(services: &str) -> Publisher {
        let registry = Registry::parse("r", &crate::test_support::registry_yaml(services)).unwrap();
        let options = crate::test_support::translate_options(8080);
        Publisher::new(registry, options).unwrap().0
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_see_each_update_and_never_wait_for_a_writer() {
        let shared = SharedPublisher::new(publisher("services:\n  - name: a\n    routes: [{prefix: /a}]\n"));
        let before = shared.view();
        let writer = shared.clone();
        let busy = tokio::spawn(async move {
            writer
                .update(|p| {
                    // A writer that takes its time (as translation of a large registry does).
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    let registry = Registry::parse(
                        "r",
                        &crate::test_support::registry_yaml("services:\n  - name: a\n    routes: [{prefix: /a}]\n  - name: b\n    routes: [{prefix: /b}]\n"),
                    )
                    .unwrap();
                    p.apply(registry).unwrap()
                })
                .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        let during = shared.view();
        assert!(started.elapsed() < std::time::Duration::from_millis(50), "a reader waited for the writer");
        assert_eq!(during.registry.version, before.registry.version, "the old view until the update is done");
        assert!(busy.await.unwrap());
        let after = shared.view();
        assert_ne!(after.registry.version, before.registry.version);
        assert_eq!(after.registry.services.len(), 2);
        assert_ne!(after.snapshot.version, before.snapshot.version);
    }
}
