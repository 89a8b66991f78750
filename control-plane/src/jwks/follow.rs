//! The fetcher task: follows the registry's JWKS sources, fetches each when due (the timer,
//! or reports of unknown kids through the limiter), and publishes a changed key set.
//! Fetches run as their own tasks, so a slow provider holds up no other issuer.

use std::collections::BTreeMap;
use std::time::Instant;

use tokio::task::JoinSet;

use crate::registry::jwks_source::JwksSource;
use crate::shared_publisher::SharedPublisher;

use super::fetch::{client, fetch, FetchError, Fetched};
use super::issuer::{FetchKind, FetchOutcome, IssuerState};
use super::{JwksHandle, RemoteKeys};

struct Followed {
    state: IssuerState,
    /// The source's HTTPS client, or why there is none (a CA bundle rustls refuses).
    client: Result<reqwest::Client, FetchError>,
}

type Done = (String, Result<Fetched, FetchError>);

/// Runs until the process stops (the supervisor aborts it then).
pub async fn follow(publisher: SharedPublisher, handle: JwksHandle) {
    let mut views = publisher.subscribe();
    let mut reports = handle.receiver.clone().lock_owned().await;
    let mut followed: BTreeMap<String, Followed> = BTreeMap::new();
    let mut fetching: JoinSet<Done> = JoinSet::new();
    let mut sources: Vec<JwksSource> = Vec::new();
    loop {
        let now = Instant::now();
        let current = views.borrow_and_update().registry.jwks.clone();
        if current != sources {
            reconcile(&mut followed, &current, now);
            sources = current;
        }
        start_due(&mut followed, &mut fetching, now);
        handle.set_status(followed.values().map(|f| f.state.status(now, unix_ms())).collect());
        let wake = followed.values().filter_map(|f| f.state.wake_at(now)).min();
        tokio::select! {
            changed = views.changed() => if changed.is_err() { return },
            report = reports.recv() => match report {
                Some((issuer, kid)) => {
                    if let Some(f) = followed.get_mut(&issuer) {
                        f.state.report(&kid, Instant::now());
                    }
                }
                None => return,
            },
            Some(joined) = fetching.join_next(), if !fetching.is_empty() => {
                if let Ok((issuer, result)) = joined {
                    finish(&publisher, &mut followed, &issuer, result).await;
                }
            }
            _ = sleep_until(wake) => {}
        }
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// New or changed sources start afresh (fetched at once); removed ones are dropped.
fn reconcile(followed: &mut BTreeMap<String, Followed>, sources: &[JwksSource], now: Instant) {
    followed.retain(|issuer, f| sources.iter().any(|s| s.issuer == *issuer && *s == f.state.source));
    for source in sources {
        if !followed.contains_key(&source.issuer) {
            let client = client(source);
            followed.insert(source.issuer.clone(), Followed { state: IssuerState::new(source.clone(), now), client });
        }
    }
}

fn start_due(followed: &mut BTreeMap<String, Followed>, fetching: &mut JoinSet<Done>, now: Instant) {
    for (issuer, f) in followed.iter_mut() {
        let Some(kind) = f.state.due(now) else { continue };
        f.state.start(kind, now);
        let issuer = issuer.clone();
        let (uri, etag) = (f.state.source.uri.clone(), f.state.etag().map(str::to_owned));
        match &f.client {
            Ok(client) => {
                let client = client.clone();
                fetching.spawn(async move {
                    let result = fetch(&client, &uri, etag.as_deref()).await;
                    (issuer, result)
                });
            }
            Err(e) => {
                let e = e.clone();
                fetching.spawn(async move { (issuer, Err(e)) });
            }
        }
        if kind == FetchKind::Refetch {
            tracing::info!(issuer = %f.state.source.issuer, "unknown kid reported: fetching the JWKS again");
        }
    }
}

/// A fetch is done: a changed key set is published with every other issuer's, or, if the
/// publisher refuses it, the last good one stays.
async fn finish(publisher: &SharedPublisher, followed: &mut BTreeMap<String, Followed>, issuer: &str, result: Result<Fetched, FetchError>) {
    let Some(f) = followed.get_mut(issuer) else { return };
    let FetchOutcome::Changed { set, etag } = f.state.finish(result, Instant::now(), unix_ms()) else { return };
    let mut keys: RemoteKeys =
        followed.iter().filter_map(|(i, f)| f.state.keys.as_ref().map(|s| (i.clone(), s.keys.clone()))).collect();
    keys.insert(issuer.to_owned(), set.keys.clone());
    let kids: Vec<String> = set.kids().into_iter().collect();
    let Some(f) = followed.get_mut(issuer) else { return };
    match publisher.update(|p| p.set_remote_keys(keys)).await {
        Ok(_) => {
            tracing::info!(%issuer, ?kids, "JWKS keys published");
            crate::metrics::bump(&crate::metrics::JWKS_KEY_SETS_PUBLISHED);
            f.state.accept(set, etag);
        }
        Err(e) => f.state.refuse(format!("the key set is refused: {e}"), Instant::now(), unix_ms()),
    }
}

fn unix_ms() -> u64 {
    crate::clock::unix_ms() as u64
}
