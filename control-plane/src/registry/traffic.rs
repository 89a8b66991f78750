//! Traffic policy per service: what the registry may say, and the defaults taken from the
//! original gateway's settings (timeout, retry and circuit-breaker services) when it does not.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficSpec {
    /// Whole-request timeout; the upstream's 504 says it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Longer (or shorter) timeouts below a prefix, e.g. a mint endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_timeouts: Vec<RouteTimeout>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetrySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancing: Option<LoadBalancingSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTimeout {
    pub prefix: String,
    pub timeout_ms: u64,
}

/// Envoy's own default back-off (25 ms base, ten times that at most): what a retry waits
/// by default, and always when the connection never opened.
pub const FAST_RETRY_BASE_MS: u64 = 25;
pub const FAST_RETRY_MAX_MS: u64 = 250;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Retries after the first try, for requests that may be retried after reaching the
    /// upstream; the others get at most one, and only when the connection never opened.
    pub attempts: u32,
    /// The back-off before each retry of those requests (Envoy's jittered exponential one,
    /// which it also waits after a refused connection: keep it short).
    pub base_interval_ms: u64,
    pub max_interval_ms: u64,
    /// Each try's own timeout; absent: the whole timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerSpec {
    /// Eject an instance whose error rate over the last 10 s reaches this...
    pub error_threshold_percentage: u32,
    /// ...once it has served at least this many requests in that window.
    pub volume_threshold: u32,
    /// How long an ejected instance stays out (doubling on each repeat ejection).
    pub reset_timeout_ms: u64,
    /// Eject after this many 5xx in a row, or this many connect failures in a row
    /// (counted apart), whatever the volume.
    #[serde(default = "default_consecutive_5xx")]
    pub consecutive_5xx: u32,
    #[serde(default = "default_limit")]
    pub max_connections: u32,
    #[serde(default = "default_limit")]
    pub max_pending_requests: u32,
    #[serde(default = "default_limit")]
    pub max_requests: u32,
    /// Retries in flight to the whole service at once.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
}

fn default_consecutive_5xx() -> u32 {
    5
}
fn default_limit() -> u32 {
    1024
}
fn default_max_retries() -> u32 {
    64
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest,
    Random,
    RingHash,
    Maglev,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancingSpec {
    pub policy: LbPolicy,
    /// For ring_hash and maglev: hash on this request header (e.g. x-user-id)...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_header: Option<String>,
    /// ...or on this cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_cookie: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckSpec {
    #[serde(default = "default_health_path")]
    pub path: String,
    #[serde(default = "default_health_interval")]
    pub interval_ms: u64,
    #[serde(default = "default_health_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_healthy")]
    pub healthy_threshold: u32,
    #[serde(default = "default_unhealthy")]
    pub unhealthy_threshold: u32,
    /// `false` turns active health checking off for the service.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_health_path() -> String {
    String::from("/health")
}
fn default_health_interval() -> u64 {
    30_000
}
fn default_health_timeout() -> u64 {
    5_000
}
fn default_healthy() -> u32 {
    2
}
fn default_unhealthy() -> u32 {
    3
}
fn default_true() -> bool {
    true
}

/// A service's traffic policy with every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    pub timeout_ms: u64,
    pub route_timeouts: Vec<RouteTimeout>,
    pub retries: RetrySpec,
    pub circuit_breaker: CircuitBreakerSpec,
    pub load_balancing: LoadBalancingSpec,
    pub health_check: Option<HealthCheckSpec>,
}

impl TrafficSpec {
    /// Fills in what the registry left out with the original gateway's settings for this
    /// service: 5 s default timeout (its proxy default), payment 30 s, minting 120 s; its
    /// per-service retry counts; opossum's breaker (50 %, 30 s reset) with a volume of 10.
    ///
    /// Not its retry back-off (1 s, 2 s, 5 s bases): it retried one address, where waiting
    /// gave the service time; here a retry goes to another instance and a failing one is
    /// ejected, while Envoy waits the same back-off after a refused connection, so a dead
    /// service answered 504 after the whole timeout instead of a fast 503.
    pub fn resolve(&self, service: &str) -> Traffic {
        let (timeout_ms, attempts) = match service {
            "payment" => (30_000, 3),
            "minting" | "blockchain" => (120_000, 5),
            _ => (5_000, 3),
        };
        let retries = RetrySpec {
            attempts,
            base_interval_ms: FAST_RETRY_BASE_MS,
            max_interval_ms: FAST_RETRY_MAX_MS,
            per_try_timeout_ms: None,
        };
        Traffic {
            timeout_ms: self.timeout_ms.unwrap_or(timeout_ms),
            route_timeouts: self.route_timeouts.clone(),
            retries: self.retries.clone().unwrap_or(retries),
            circuit_breaker: self.circuit_breaker.clone().unwrap_or(CircuitBreakerSpec {
                error_threshold_percentage: 50,
                volume_threshold: 10,
                reset_timeout_ms: 30_000,
                consecutive_5xx: default_consecutive_5xx(),
                max_connections: default_limit(),
                max_pending_requests: default_limit(),
                max_requests: default_limit(),
                max_retries: default_max_retries(),
            }),
            load_balancing: self
                .load_balancing
                .clone()
                .unwrap_or(LoadBalancingSpec { policy: LbPolicy::RoundRobin, hash_header: None, hash_cookie: None }),
            health_check: match &self.health_check {
                Some(hc) if !hc.enabled => None,
                Some(hc) => Some(hc.clone()),
                None => Some(HealthCheckSpec {
                    path: default_health_path(),
                    interval_ms: default_health_interval(),
                    timeout_ms: default_health_timeout(),
                    healthy_threshold: default_healthy(),
                    unhealthy_threshold: default_unhealthy(),
                    enabled: true,
                }),
            },
        }
    }
}

/// Checks what serde cannot: ranges and combinations. Returns (field, reason).
pub fn check(traffic: &TrafficSpec) -> Result<(), (String, String)> {
    let err = |field: &str, reason: &str| Err((field.to_owned(), reason.to_owned()));
    if traffic.timeout_ms == Some(0) {
        return err("traffic.timeout_ms", "must be positive");
    }
    for (i, rt) in traffic.route_timeouts.iter().enumerate() {
        if rt.timeout_ms == 0 {
            return Err((format!("traffic.route_timeouts[{i}].timeout_ms"), "must be positive".into()));
        }
    }
    if let Some(r) = &traffic.retries {
        if r.attempts > 10 {
            return err("traffic.retries.attempts", "at most 10");
        }
        if r.base_interval_ms == 0 || r.max_interval_ms < r.base_interval_ms {
            return err("traffic.retries", "need 0 < base_interval_ms <= max_interval_ms");
        }
    }
    if let Some(cb) = &traffic.circuit_breaker {
        if cb.error_threshold_percentage == 0 || cb.error_threshold_percentage > 100 {
            return err("traffic.circuit_breaker.error_threshold_percentage", "must be 1-100");
        }
        if cb.reset_timeout_ms == 0 {
            return err("traffic.circuit_breaker.reset_timeout_ms", "must be positive");
        }
    }
    if let Some(lb) = &traffic.load_balancing {
        let hashing = matches!(lb.policy, LbPolicy::RingHash | LbPolicy::Maglev);
        let has_key = lb.hash_header.is_some() || lb.hash_cookie.is_some();
        if hashing && !has_key {
            return err("traffic.load_balancing", "ring_hash and maglev need hash_header or hash_cookie");
        }
        if !hashing && has_key {
            return err("traffic.load_balancing", "hash_header and hash_cookie need ring_hash or maglev");
        }
    }
    if let Some(hc) = &traffic.health_check {
        if !hc.path.starts_with('/') || hc.interval_ms == 0 || hc.timeout_ms == 0 {
            return err("traffic.health_check", "needs an absolute path and positive interval and timeout");
        }
    }
    Ok(())
}
