//! The gRPC adapter: who is asking, which descriptor, which registry's limits.

use std::sync::Arc;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitService;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
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

#[tonic::async_trait]
impl RateLimitService for RateLimitApi {
    async fn should_rate_limit(&self, request: Request<RateLimitRequest>) -> Result<Response<RateLimitResponse>, Status> {
        self.admit_caller(&request)?;
        let RateLimitRequest { domain, descriptors, hits_addend } = request.into_inner();
        if domain != RATE_LIMIT_DOMAIN {
            return Err(Status::invalid_argument(format!("unknown domain {domain:?}")));
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
