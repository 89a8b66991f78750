//! `stagedoor serve`: wires the registry file, the publisher, the ADS and API gRPC server
//! and the status HTTP server together. Stops on Ctrl-C or SIGTERM.

use std::sync::Arc;

use anyhow::Context;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use stagedoor_proto::v1::control_plane_server::ControlPlaneServer;
use tokio::sync::Mutex;

use crate::api::ControlPlaneApi;
use crate::cli::ServeArgs;
use crate::publish::Publisher;
use crate::revocations::RevocationStore;
use crate::discovery::redis_source::SharedStatus;
use crate::status_http::AppState;
use crate::xds::server::AdsServer;
use crate::xds::status::EnvoyRegistry;

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let registry = crate::registry::load(&args.registry)?;
    let options = args.translate_options();
    let (publisher, snapshots) = Publisher::new(registry, options).context("the registry cannot be served")?;
    tracing::info!(
        registry = %publisher.registry().version, snapshot = %publisher.current().version,
        services = publisher.registry().services.len(), "registry loaded"
    );
    let publisher = Arc::new(Mutex::new(publisher));
    let envoys = EnvoyRegistry::default();

    // A fresh epoch per process: filters holding a cursor from before a restart resync.
    let epoch = (crate::xds::status::unix_ms() % u128::from(u32::MAX)) as u32;
    let revocations = Arc::new(std::sync::Mutex::new(RevocationStore::new(epoch)));
    tokio::spawn(collect_expired_revocations(revocations.clone()));

    tokio::spawn(crate::watch::follow_registry_file(args.registry.clone(), publisher.clone()));
    tokio::spawn(expire_retired_clusters(publisher.clone()));
    let discovery = SharedStatus::default();
    if let Some(url) = args.redis.clone() {
        tokio::spawn(crate::discovery::redis_source::follow(url.clone(), publisher.clone(), discovery.clone()));
        tokio::spawn(crate::discovery::revocation_sync::follow(url, revocations.clone()));
    }
    let http_state = AppState {
        publisher: publisher.clone(),
        envoys: envoys.clone(),
        revocations: revocations.clone(),
        discovery: args.redis.is_some().then_some(discovery),
    };
    let http = tokio::spawn(crate::status_http::serve(args.http, http_state));

    let api = ControlPlaneApi {
        publisher,
        envoys: envoys.clone(),
        registry_file: args.registry.clone(),
        revocations,
        redis_url: args.redis.clone(),
    };
    tracing::info!(xds = %args.xds, "xDS and stagedoor.v1 gRPC listening");
    let grpc = tonic::transport::Server::builder()
        .add_service(AggregatedDiscoveryServiceServer::new(AdsServer::new(snapshots, envoys)))
        .add_service(ControlPlaneServer::new(api))
        .serve_with_shutdown(args.xds, shutdown_signal());
    tokio::select! {
        result = grpc => result.context("gRPC server failed")?,
        result = http => result.context("status server task failed")?.context("status server failed")?,
    }
    tracing::info!("stopped");
    Ok(())
}

async fn expire_retired_clusters(publisher: Arc<Mutex<Publisher>>) {
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        ticker.tick().await;
        if let Err(e) = publisher.lock().await.expire_retired(std::time::Instant::now()) {
            tracing::error!(error = %e, "could not drop retired clusters");
        }
    }
}

async fn collect_expired_revocations(store: Arc<std::sync::Mutex<RevocationStore>>) {
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        ticker.tick().await;
        let now = (crate::xds::status::unix_ms() / 1000) as i64;
        if let Ok(mut store) = store.lock() {
            store.collect(now);
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}
