//! `stagedoor serve`: wires the registry file, the publisher, the ADS and API gRPC server
//! and the status HTTP server together, with the background tasks under supervision.
//!
//! Stopping (SIGTERM or SIGINT): the stop flag closes every ADS stream (Envoys keep their
//! last config and reconnect to a replacement), both servers stop accepting and finish what
//! is in flight, the background tasks end; the process waits at most [`DRAIN_LIMIT`] for
//! that, and a second signal ends the wait at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_server::ClientStatusDiscoveryServiceServer;
use stagedoor_proto::v1::control_plane_server::ControlPlaneServer;

use crate::api::ControlPlaneApi;
use crate::api_guard::GuardedApi;
use crate::auth::ApiTokens;
use crate::serve_args::ServeArgs;
use crate::discovery::redis_source::SharedStatus;
use crate::discovery::revocation_sync::WriteBack;
use crate::publish::Publisher;
use crate::shared_publisher::SharedPublisher;
use crate::revocations::RevocationStore;
use crate::shutdown::{Drained, OsSignals};
use crate::status_http::AppState;
use crate::supervise::Supervisor;
use crate::xds::server::AdsServer;
use crate::xds::status::EnvoyRegistry;

/// How long a stop waits for servers and tasks to finish: well inside Kubernetes' default
/// 30 s grace period, and long enough for an in-flight API call or /status read.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(1);

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Before anything else, so a stop request during startup is not lost either.
    let mut signals = OsSignals::install().context("cannot listen for SIGTERM and SIGINT")?;
    let trust = Trust::load(&args)?;
    let xds_admission = args.xds_admission()?;
    let registry_store = args.redis.clone().map(|url| crate::registry_store::follow::RegistryStore {
        url,
        file: args.registry.clone(),
        status: Default::default(),
        keep: args.registry_history,
    });
    let registry = match &registry_store {
        Some(store) => crate::registry_store::follow::initial_registry(store, &args.registry).await?,
        None => crate::registry::load(&args.registry)?,
    };
    let options = args.translate_options();
    let (publisher, snapshots) =
        Publisher::new(registry, options).with_context(|| format!("{}: the registry cannot be served", args.registry.display()))?;
    tracing::info!(
        registry = %publisher.registry().version, snapshot = %publisher.current().version,
        services = publisher.registry().services.len(), "registry loaded"
    );
    let publisher = SharedPublisher::new(publisher);
    let envoys = EnvoyRegistry::default();
    let (stop_switch, stop) = crate::shutdown::channel();

    // A fresh epoch per process: filters holding a cursor from before a restart resync.
    let epoch = (crate::clock::unix_ms() % u128::from(u32::MAX)) as u32;
    let revocations = Arc::new(std::sync::Mutex::new(RevocationStore::new(epoch)));

    let mut background = Supervisor::new(stop.clone(), crate::supervise::RESTART_AFTER);
    {
        let revocations = revocations.clone();
        background.spawn("revocation sweep", move || collect_expired_revocations(revocations.clone()));
    }
    // With Redis, Redis wins: the file seeds an empty one, and its later edits are applies
    // through this replica (README, "Replicas").
    if let Some(store) = registry_store.clone() {
        let (path, publisher, halt) = (args.registry.clone(), publisher.clone(), stop.clone());
        background.spawn("redis registry follower", move || {
            crate::registry_store::follow::follow(store.clone(), path.clone(), publisher.clone(), halt.clone())
        });
    }
    {
        let (path, publisher, store) = (args.registry.clone(), publisher.clone(), registry_store.clone());
        background.spawn("registry watcher", move || crate::watch::follow_registry_file(path.clone(), publisher.clone(), store.clone()));
    }
    let certificate_problems = crate::cert_status::CertificateProblems::default();
    {
        let (publisher, problems) = (publisher.clone(), certificate_problems.clone());
        background.spawn("certificate watcher", move || crate::cert_watch::follow_certificate_files(publisher.clone(), problems.clone()));
    }
    if let Some(served) = trust.served.clone() {
        let (dir, problems) = (crate::tls::files::CredentialDir::new(&args.tls_dir), certificate_problems.clone());
        background.spawn("control-plane credential watcher", move || {
            crate::tls::rotate::follow_server_credentials(dir.clone(), served.clone(), problems.clone())
        });
    }
    {
        let publisher = publisher.clone();
        background.spawn("retired cluster sweep", move || expire_retired_clusters(publisher.clone()));
    }
    let discovery = SharedStatus::default();
    let revocation_write_back = WriteBack::default();
    if let Some(url) = args.redis.clone() {
        let (redis, publisher, discovery, halt) = (url.clone(), publisher.clone(), discovery.clone(), stop.clone());
        background.spawn("redis instance follower", move || {
            crate::discovery::redis_source::follow(redis.clone(), publisher.clone(), discovery.clone(), halt.clone())
        });
        let (revocations, write_back, halt) = (revocations.clone(), revocation_write_back.clone(), stop.clone());
        background.spawn("redis revocation sync", move || {
            crate::discovery::revocation_sync::follow(url.clone(), revocations.clone(), write_back.clone(), halt.clone())
        });
    }
    if let Some(dir) = args.test_bootstrap_dir.clone() {
        let (snapshots, halt) = (snapshots.clone(), stop.clone());
        background.spawn("published bootstrap writer", move || crate::envoy_check::published::write_each(dir.clone(), snapshots.clone(), halt.clone()));
    }
    let rate_limit_redis = args.ratelimit_redis.as_deref().or(args.redis.as_deref());
    let rate_limiter = match args.ratelimit {
        Some(_) => Some(crate::ratelimit::limiter(rate_limit_redis, args.ratelimit_redis_timeout(), &publisher)?),
        None => None,
    };
    let shadow_counts = crate::shadow_report::ShadowCounts::default();
    let jwks = crate::jwks::JwksHandle::default();
    {
        let (publisher, jwks) = (publisher.clone(), jwks.clone());
        background.spawn("jwks fetcher", move || crate::jwks::follow::follow(publisher.clone(), jwks.clone()));
    }
    let http_state = AppState {
        publisher: publisher.clone(),
        envoys: envoys.clone(),
        revocations: revocations.clone(),
        discovery: args.redis.is_some().then_some(discovery),
        tokens: trust.tokens.clone(),
        insecure: args.insecure,
        certificate_problems,
        served_tls: trust.served.clone(),
        rate_limiter: rate_limiter.clone(),
        shadow_counts: shadow_counts.clone(),
        jwks,
        registry_store: registry_store.as_ref().map(|s| s.status.clone()),
    };
    let mut http = tokio::spawn(crate::status_http::serve(args.http, trust.served.clone(), http_state.clone(), stop.clone()));
    let mut metrics = tokio::spawn(crate::status_http::serve_metrics(args.metrics, http_state, stop.clone()));

    let rate_limit_api = rate_limiter.map(|limiter| crate::ratelimit::RateLimitApi {
        publisher: publisher.clone(),
        limiter,
        require_envoy_certificate: !args.insecure,
    });
    let token_state = crate::token_endpoint::preflight::TokenEndpointState {
        publisher: publisher.clone(),
        revocations: revocations.clone(),
        store: args.redis.clone().map(|url| Arc::new(crate::token_endpoint::store::TokenStore::new(url))),
        write_back: revocation_write_back.clone(),
        insecure: args.insecure,
    };
    if publisher.view().registry.token_endpoint.is_some() && args.token_endpoint.is_none() {
        tracing::warn!("the registry declares a token_endpoint but serve has no --token-endpoint: refresh and logout answer 503");
    }
    let mut token_endpoint = tokio::spawn(serve_token_endpoint(args.token_endpoint, trust.served.clone(), token_state, stop.clone()));
    let api = ControlPlaneApi {
        publisher: publisher.clone(),
        envoys: envoys.clone(),
        registry_file: args.registry.clone(),
        revocations,
        redis_url: args.redis.clone(),
        revocation_write_back,
        shadow_counts,
        registry_store,
    };
    let csds = crate::xds::csds_server::CsdsServer {
        envoys: envoys.clone(),
        snapshots: snapshots.clone(),
        tokens: trust.tokens.clone(),
        insecure: args.insecure,
        stop: stop.clone(),
    };
    let api = GuardedApi { api, publisher, tokens: trust.tokens, insecure: args.insecure };
    tracing::info!(xds = %args.xds, tls = !args.insecure, "xDS, CSDS and stagedoor.v1 gRPC listening");
    let router = tonic::transport::Server::builder()
        .add_service(AggregatedDiscoveryServiceServer::new(AdsServer::new(snapshots, envoys, stop.clone(), !args.insecure).with_stream_rate(args.max_new_xds_streams_per_second)))
        .add_service(ControlPlaneServer::new(api))
        // CSDS: the same port, certificates and read permission as the API.
        .add_service(ClientStatusDiscoveryServiceServer::new(csds));
    // With TLS the handshakes are ours (tls/listener.rs), so rotated credentials apply to
    // the next one; tonic reads the client certificate from each stream as before.
    let mut grpc = match trust.served.clone() {
        Some(served) => {
            let tcp = tokio::net::TcpListener::bind(args.xds).await.with_context(|| format!("cannot listen on {} (xDS)", args.xds))?;
            let incoming = crate::tls::listener::grpc_incoming(tcp, served, xds_admission);
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop.clone().requested()))
        }
        None => tokio::spawn(router.serve_with_shutdown(args.xds, stop.clone().requested())),
    };
    let mut rate_limit = tokio::spawn(crate::ratelimit::serve(args.ratelimit, trust.served.clone(), rate_limit_api, stop.clone()));

    // Until a stop request, either server ending is a failure (a port taken, say).
    tokio::select! {
        signal = signals.next() => tracing::info!(%signal, "stopping: closing ADS streams and servers"),
        joined = &mut grpc => return Err(ended_early("gRPC server", outcome(joined))),
        joined = &mut http => return Err(ended_early("status server", outcome(joined))),
        joined = &mut metrics => return Err(ended_early("metrics server", outcome(joined))),
        joined = &mut rate_limit => return Err(ended_early("rate limit server", outcome(joined))),
        joined = &mut token_endpoint => return Err(ended_early("token endpoint", outcome(joined))),
    }
    let stopping = Instant::now();
    stop_switch.stop();
    let drain = async {
        let (grpc, http, metrics, rate_limit, token_endpoint) =
            tokio::join!(&mut grpc, &mut http, &mut metrics, &mut rate_limit, &mut token_endpoint);
        background.join().await;
        let servers = [
            ("gRPC server", outcome(grpc)),
            ("status server", outcome(http)),
            ("metrics server", outcome(metrics)),
            ("rate limit server", outcome(rate_limit)),
            ("token endpoint", outcome(token_endpoint)),
        ];
        for (server, outcome) in servers {
            if let Err(e) = outcome {
                tracing::warn!(server, error = %e, "server failed while stopping");
            }
        }
    };
    match crate::shutdown::drain(drain, DRAIN_LIMIT, signals.next()).await {
        Drained::Done => {}
        Drained::LimitReached => {
            tracing::warn!(limit_ms = DRAIN_LIMIT.as_millis(), "drain limit reached; stopping with work in flight");
        }
        Drained::SecondSignal(signal) => tracing::warn!(%signal, "second stop request; not waiting for the drain"),
    }
    tracing::info!(after_ms = stopping.elapsed().as_millis(), "stopped");
    Ok(())
}

/// The token endpoint when `--token-endpoint` is given; else waits for the stop, like a
/// server that is not there.
async fn serve_token_endpoint(
    listen: Option<std::net::SocketAddr>,
    tls: Option<crate::tls::served::ServedTls>,
    state: crate::token_endpoint::preflight::TokenEndpointState,
    stop: crate::shutdown::Stop,
) -> std::io::Result<()> {
    match listen {
        Some(listen) => crate::token_endpoint::http::serve(listen, tls, state, stop).await,
        None => {
            stop.requested().await;
            Ok(())
        }
    }
}

/// A server task's result, whether the server or its task failed.
fn outcome<E>(joined: Result<Result<(), E>, tokio::task::JoinError>) -> anyhow::Result<()>
where
    anyhow::Error: From<E>,
{
    Ok(joined??)
}

/// A server that returned before any stop request: its error, or that it ended at all.
fn ended_early(server: &str, outcome: anyhow::Result<()>) -> anyhow::Error {
    match outcome {
        Ok(()) => anyhow::anyhow!("{server} ended without a stop request"),
        Err(e) => e.context(format!("{server} failed")),
    }
}

/// The TLS configurations and API tokens the servers start with, checked before any
/// port opens: a bad certificate or tokens file stops the start, naming the file.
struct Trust {
    /// None with --insecure.
    served: Option<crate::tls::served::ServedTls>,
    tokens: ApiTokens,
}

impl Trust {
    fn load(args: &ServeArgs) -> anyhow::Result<Self> {
        let tokens = match &args.api_tokens {
            Some(path) => ApiTokens::load(path)?,
            None => ApiTokens::default(),
        };
        if args.insecure {
            tracing::warn!(
                "--insecure: xDS, the API and /status are plain text without client authentication; anyone who \
                 reaches them gets the signing secrets{}",
                if tokens.is_empty() { " and every API right" } else { "" }
            );
            return Ok(Self { served: None, tokens });
        }
        let dir = crate::tls::files::CredentialDir::new(&args.tls_dir);
        if !dir.has_server_credentials() {
            anyhow::bail!(
                "no TLS credentials in {}: run `stagedoor certs init --dir {0}` (or serve --insecure, for debugging only)",
                args.tls_dir.display()
            );
        }
        let credentials = crate::tls::load::server(&dir)?;
        let served = crate::tls::served::ServedTls::new(&credentials)?;
        tracing::info!(dir = %args.tls_dir.display(), api_tokens = !tokens.is_empty(), "mutual TLS on xDS, the API and /status");
        Ok(Self { served: Some(served), tokens })
    }
}

async fn expire_retired_clusters(publisher: SharedPublisher) {
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        ticker.tick().await;
        if let Err(e) = publisher.update(|p| p.expire_retired(std::time::Instant::now())).await {
            tracing::error!(error = %e, "could not drop retired clusters");
        }
    }
}

async fn collect_expired_revocations(store: Arc<std::sync::Mutex<RevocationStore>>) {
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        ticker.tick().await;
        let now = (crate::clock::unix_ms() / 1000) as i64;
        if let Ok(mut store) = store.lock() {
            store.collect(now);
        }
    }
}
