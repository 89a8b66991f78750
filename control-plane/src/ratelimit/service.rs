//! The gRPC adapter: who is asking, which descriptor, which registry's limits.

use std::sync::Arc;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use stagedoor_filter_core::signature::replay;
use stagedoor_ratelimit::limiter::{Limiter, Verdict};
use stagedoor_ratelimit::plan::RequestView;
use tonic::{Request, Response, Status};

use super::response::response;
use crate::shared_publisher::SharedPublisher;
use crate::tls::identity::{identity_of, PeerIdentity};
use crate::translate::RATE_LIMIT_DOMAIN;

pub struct RateLimitApi {
    pub publisher: SharedPublisher,
    pub limiter: Arc<Limiter>,
    /// False only with `--insecure`.
    pub require_envoy_certificate: bool,
}

impl RateLimitApi {
    /// Only Envoys: an operator's certificate is signed by the same CA but has no business
    /// spending anyone's quota.
    fn admit_caller<T>(&self, request: &Request<T>) -> Result<(), Status> {
        if !self.require_envoy_certificate {
            return Ok(());
        }
        match request.peer_certs().and_then(|chain| chain.first().map(|c| identity_of(c))) {
            Some(PeerIdentity::Envoy { .. }) => Ok(()),
            Some(other) => Err(Status::permission_denied(format!("{other} is not an Envoy certificate"))),
            None => Err(Status::unauthenticated("the rate limit service needs an Envoy's client certificate")),
        }
    }
}

/// The widest replay window a filter may ask for: twice the largest tolerance.
const MAX_REPLAY_WINDOW_MS: u64 = 2 * stagedoor_filter_core::signature::MAX_TOLERANCE_SECS * 1000;

impl RateLimitApi {
    /// A signed request's replay check (the filter's descriptor `signature_replay`,
    /// `window_ms`), or `None` for any other descriptor.
    async fn replay_check(&self, descriptors: &[RateLimitDescriptor]) -> Option<Result<Verdict, Status>> {
        let entries = &descriptors.first()?.entries;
        let value = |key: &str| entries.iter().find(|e| e.key == key).map(|e| e.value.as_str());
        let digest = value(replay::DIGEST_KEY)?;
        let window_ms = value(replay::WINDOW_KEY).and_then(|w| w.parse::<u64>().ok()).filter(|w| (1..=MAX_REPLAY_WINDOW_MS).contains(w));
        let (Some(window_ms), true) = (window_ms, digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit())) else {
            return Some(Err(Status::invalid_argument("a replay check needs a 64-hex digest and a window_ms within bounds")));
        };
        Some(Ok(self.limiter.first_use(digest, window_ms).await))
    }
}

#[tonic::async_trait]
impl RateLimitService for RateLimitApi {
    async fn should_rate_limit(&self, request: Request<RateLimitRequest>) -> Result<Response<RateLimitResponse>, Status> {
        self.admit_caller(&request)?;
        let RateLimitRequest { domain, descriptors, hits_addend } = request.into_inner();
        if domain != RATE_LIMIT_DOMAIN {
            return Err(Status::invalid_argument(format!("unknown domain {domain:?}")));
        }
        if let Some(verdict) = self.replay_check(&descriptors).await {
            return response(&verdict?).map(Response::new);
        }
        let view = self.publisher.view();
        // A registry without global limits (removed since Envoy's last config): admit.
        let Some(limits) = view.registry.global_rate_limits.as_ref() else {
            return response(&Verdict::Admit { headers: None }).map(Response::new);
        };
        // The translation sends one descriptor per request; any other is not ours.
        let Some(descriptor) = descriptors.first() else {
            return Err(Status::invalid_argument("no descriptor"));
        };
        let entries = descriptor.entries.iter().map(|e| (e.key.as_str(), e.value.as_str()));
        let cost = hits_addend.max(1);
        let verdict = self.limiter.check(limits, &RequestView::from_entries(entries), cost).await;
        response(&verdict).map(Response::new)
    }
}
