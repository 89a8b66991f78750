//! The RateLimitService's own gRPC server, on `--ratelimit`, stopping with the process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use stagedoor_ratelimit::limiter::Limiter;
use stagedoor_ratelimit::store::RedisStore;

use super::RateLimitApi;
use crate::shared_publisher::SharedPublisher;
use crate::shutdown::Stop;
use crate::tls::served::ServedTls;

/// The local fallback's size when the registry has no global limits yet.
const DEFAULT_LOCAL_KEYS: usize = 10_000;

/// The limiter for `serve`: counting in `redis`, or only by fail modes without one.
pub fn limiter(redis: Option<&str>, timeout: Duration, publisher: &SharedPublisher) -> anyhow::Result<Arc<Limiter>> {
    let store = redis.map(|url| RedisStore::lazy(url, timeout)).transpose().context("the rate limit Redis URL")?;
    if store.is_none() {
        tracing::warn!("--ratelimit without --redis or --ratelimit-redis: every global limit takes its fail mode");
    }
    let local_keys =
        publisher.view().registry.global_rate_limits.as_ref().map_or(DEFAULT_LOCAL_KEYS, |limits| limits.local_fallback_keys);
    Ok(Arc::new(Limiter::new(store, local_keys)))
}

pub async fn serve(
    listen: Option<SocketAddr>,
    tls: Option<ServedTls>,
    api: Option<RateLimitApi>,
    stop: Stop,
) -> anyhow::Result<()> {
    // Not asked for: a server that only waits, so `serve` joins every server alike.
    let (Some(listen), Some(api)) = (listen, api) else {
        stop.requested().await;
        return Ok(());
    };
    tracing::info!(%listen, tls = tls.is_some(), "RateLimitService gRPC listening");
    let router = tonic::transport::Server::builder().add_service(RateLimitServiceServer::new(api));
    // The same served credentials as the xDS port, so a rotation applies here too.
    match tls {
        Some(served) => {
            let tcp = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen} (RateLimitService)"))?;
            router.serve_with_incoming_shutdown(crate::tls::listener::grpc_incoming(tcp, served, crate::tls::admission::AdmissionLimits::OFF), stop.requested()).await?;
        }
        None => router.serve_with_shutdown(listen, stop.requested()).await?,
    }
    Ok(())
}
