//! `stagedoor serve`'s arguments (flags and environment variables), and the deployment
//! facts translation takes from them.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::translate::TranslateOptions;

#[derive(clap::Args)]
pub struct ServeArgs {
    #[arg(long, env = "STAGEDOOR_REGISTRY", default_value = "registry/tickettoken.yaml")]
    pub registry: PathBuf,
    /// gRPC address for xDS (ADS) and the stagedoor.v1 API.
    #[arg(long, env = "STAGEDOOR_XDS", default_value = "127.0.0.1:18000")]
    pub xds: SocketAddr,
    /// HTTP address for /status.
    #[arg(long, env = "STAGEDOOR_HTTP", default_value = "127.0.0.1:18080")]
    pub http: SocketAddr,
    /// Address of the token endpoint (refresh and logout, the registry's `token_endpoint`),
    /// same TLS as /status, Envoy certificates only; absent: not served.
    #[arg(long, env = "STAGEDOOR_TOKEN_ENDPOINT")]
    pub token_endpoint: Option<SocketAddr>,
    /// Plain HTTP address for /metrics and /healthz (no credentials: keep it private).
    #[arg(long, env = "STAGEDOOR_METRICS", default_value = "127.0.0.1:18081")]
    pub metrics: SocketAddr,
    /// Where the CA and the control plane's certificate are (`stagedoor certs init`).
    #[arg(long, env = "STAGEDOOR_TLS_DIR", default_value = crate::tls::files::DEFAULT_DIR)]
    pub tls_dir: PathBuf,
    /// Serve xDS, the API and /status in plain text, with no client authentication:
    /// anyone who reaches the ports gets the secrets and every API right. Debugging only.
    #[arg(long)]
    pub insecure: bool,
    /// Bearer tokens for API scripts (name, sha256, scopes; see README).
    #[arg(long, env = "STAGEDOOR_API_TOKENS")]
    pub api_tokens: Option<PathBuf>,
    /// Where Envoy's gateway listener binds.
    #[arg(long, env = "STAGEDOOR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The HTTP address as Envoy reaches it (revocation feed), `host:port`; default: --http,
    /// with an unspecified IP read as 127.0.0.1. `none` (the only way) turns revocation off.
    #[arg(long, env = "STAGEDOOR_ADVERTISE_HTTP", value_parser = parse_advertise_http)]
    pub advertise_http: Option<AdvertiseHttp>,
    /// Redis shared by every replica (registry, live instances, revocations, refresh
    /// families): `redis://`, `rediss://` or `redis+sentinel://h1,h2/<master>` (README,
    /// "Redis beyond one machine"); absent: the registry file and static instances only.
    #[arg(long, env = "STAGEDOOR_REDIS", value_parser = RedisUrlArg)]
    pub redis: Option<String>,
    /// With --redis: how many versions of the registry Redis keeps (history, rollback).
    #[arg(long, env = "STAGEDOOR_REGISTRY_HISTORY", default_value_t = crate::registry_store::DEFAULT_KEEP)]
    pub registry_history: usize,
    /// Path of the compiled filter, as Envoy sees it.
    #[arg(long, env = "STAGEDOOR_WASM", default_value = "target/wasm32-wasip1/release/stagedoor_filter.wasm")]
    pub wasm: PathBuf,
    /// The HMAC-only build of the filter (`scripts/build-filter.sh --hmac-only`), as Envoy
    /// sees it: pushed instead of --wasm while every token key is an HMAC secret (smaller,
    /// less memory in each of Envoy's VMs). Absent: --wasm always.
    #[arg(long, env = "STAGEDOOR_WASM_HMAC")]
    pub wasm_hmac: Option<PathBuf>,
    /// gRPC address for Envoy's RateLimitService (global rate limiting, same TLS as xDS, Envoy
    /// certificates only); absent: the registry's global limits take their failure modes.
    #[arg(long, env = "STAGEDOOR_RATELIMIT")]
    pub ratelimit: Option<SocketAddr>,
    /// Redis counting the global limits; default: --redis.
    #[arg(long, env = "STAGEDOOR_RATELIMIT_REDIS", value_parser = RedisUrlArg)]
    pub ratelimit_redis: Option<String>,
    /// How long the RateLimitService waits for Redis before the route's fail mode applies:
    /// under Envoy's timeout (20 ms by default), so the fallback is the service's, not Envoy's.
    #[arg(long, env = "STAGEDOOR_RATELIMIT_REDIS_TIMEOUT_MS", default_value_t = 15)]
    pub ratelimit_redis_timeout_ms: u64,
    /// New ADS streams admitted per second (a token bucket, bursts up to the same number);
    /// more are refused with UNAVAILABLE and Envoy retries with backoff. Checked after the
    /// TLS handshake, per stream (a client multiplexing streams on one connection); the
    /// connection admission below comes first. 0: no cap.
    #[arg(long, env = "STAGEDOOR_MAX_NEW_XDS_STREAMS_PER_SECOND", default_value_t = 100)]
    pub max_new_xds_streams_per_second: u32,
    /// New connections on the gRPC port admitted to their TLS handshake per second (a token
    /// bucket, bursts up to the same number); more wait in the accept queue, newest first,
    /// so a reconnect storm after a restart does not starve the Envoys already served, a
    /// refused client costs no handshake and an operator's call is not stuck behind the
    /// storm (tls/admission.rs). 0: no rate. Not with --insecure (no handshake).
    #[arg(long, env = "STAGEDOOR_MAX_NEW_XDS_CONNECTIONS_PER_SECOND", default_value_t = 100)]
    pub max_new_xds_connections_per_second: u32,
    /// TLS handshakes under way at once on the gRPC port; more wait in the accept queue. 0: no bound.
    #[arg(long, env = "STAGEDOOR_MAX_XDS_HANDSHAKES_IN_FLIGHT", default_value_t = 16)]
    pub max_xds_handshakes_in_flight: usize,
    /// gRPC-port connections that may wait for admission; when it is full the oldest
    /// waiting is closed before its handshake (its client retries with its backoff).
    #[arg(long, env = "STAGEDOOR_XDS_ACCEPT_QUEUE", default_value_t = 1024)]
    pub xds_accept_queue: usize,
    /// Tests only: every snapshot published is written here as a static bootstrap named
    /// by its hash, for `envoy --mode validate` (envoy_check/published.rs).
    #[arg(long, hide = true)]
    pub test_bootstrap_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// What a registry may hold (registry/limits.rs), for `serve` and `validate` alike: flags,
/// not a registry section, because they guard the Envoys against the registry; a registry
/// that set its own limits could raise them in the apply they should refuse.
#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Services in one registry; more is refused at apply, file load and validate.
    #[arg(long, env = "STAGEDOOR_MAX_SERVICES", default_value_t = crate::registry::limits::Limits::DEFAULT_SERVICES)]
    pub max_services: usize,
    /// Route prefixes (`routes:`) of one service.
    #[arg(long, env = "STAGEDOOR_MAX_ROUTES_PER_SERVICE", default_value_t = crate::registry::limits::Limits::DEFAULT_ROUTES_PER_SERVICE)]
    pub max_routes_per_service: usize,
    /// Instances of one service: static ones over it refuse the registry; live ones over it
    /// are left out of what Envoys get (logged, counted in /metrics).
    #[arg(long, env = "STAGEDOOR_MAX_INSTANCES_PER_SERVICE", default_value_t = crate::registry::limits::Limits::DEFAULT_INSTANCES_PER_SERVICE)]
    pub max_instances_per_service: usize,
}

impl LimitArgs {
    pub fn limits(&self) -> crate::registry::limits::Limits {
        crate::registry::limits::Limits {
            services: self.max_services,
            routes_per_service: self.max_routes_per_service,
            instances_per_service: self.max_instances_per_service,
        }
    }
}

impl ServeArgs {
    /// The gRPC port's admission to the handshake (tls/admission.rs).
    pub fn xds_admission(&self) -> Result<crate::tls::admission::AdmissionLimits, crate::tls::admission::AdmissionError> {
        crate::tls::admission::AdmissionLimits::new(self.max_new_xds_connections_per_second, self.max_xds_handshakes_in_flight, self.xds_accept_queue)
    }

    pub fn ratelimit_redis_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.ratelimit_redis_timeout_ms.max(1))
    }

    pub fn translate_options(&self) -> TranslateOptions {
        // Envoy resolves a relative path against its own working directory, not ours.
        let absolute = |path: &PathBuf| std::fs::canonicalize(path).unwrap_or_else(|_| path.clone()).display().to_string();
        let control_plane_http = match &self.advertise_http {
            Some(AdvertiseHttp::Off) => None,
            Some(AdvertiseHttp::At(host, port)) => Some((host.clone(), *port)),
            None if self.http.ip().is_unspecified() => Some((String::from("127.0.0.1"), self.http.port())),
            None => Some((self.http.ip().to_string(), self.http.port())),
        };
        // The RateLimitService as Envoy reaches it: an unspecified IP read as 127.0.0.1.
        let rate_limit_service = self.ratelimit.map(|addr| {
            let host = if addr.ip().is_unspecified() { String::from("127.0.0.1") } else { addr.ip().to_string() };
            (host, addr.port())
        });
        TranslateOptions {
            listen: self.listen,
            wasm_path: absolute(&self.wasm),
            hmac_wasm_path: self.wasm_hmac.as_ref().map(absolute),
            control_plane_http,
            control_plane_tls: !self.insecure,
            rate_limit_service,
            limits: self.limits.limits(),
        }
    }
}

/// Where Envoy reaches the revocation feed, or `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdvertiseHttp {
    Off,
    At(String, u16),
}

/// A Redis URL checked at startup (the message names the part at fault), kept as text:
/// each Redis user connects through `stagedoor_redis` with it. Not a plain `fn` parser:
/// clap would repeat the value, password and all, in its message.
#[derive(Clone)]
pub struct RedisUrlArg;

impl clap::builder::TypedValueParser for RedisUrlArg {
    type Value = String;

    fn parse_ref(&self, cmd: &clap::Command, arg: Option<&clap::Arg>, value: &std::ffi::OsStr) -> Result<String, clap::Error> {
        let flag = arg.map(|a| a.to_string()).unwrap_or_else(|| String::from("the Redis URL"));
        let refuse = |message: String| clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{flag}: {message}\n")).with_cmd(cmd);
        let text = value.to_str().ok_or_else(|| refuse(String::from("is not UTF-8")))?;
        stagedoor_redis::RedisUrl::parse(text).map(|_| text.to_owned()).map_err(|e| refuse(e.to_string()))
    }
}

/// `none`, or `host:port` with a host name or IP and a port 1-65535. Anything else is an
/// error at startup: a typo must never turn revocation off silently.
pub fn parse_advertise_http(value: &str) -> Result<AdvertiseHttp, String> {
    if value == "none" {
        return Ok(AdvertiseHttp::Off);
    }
    let expected = "expected host:port (a host name or IP, a port 1-65535) or none";
    let (host, port) = value.rsplit_once(':').ok_or_else(|| format!("{expected}: no port"))?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(|| format!("{expected}: bad port {port:?}"))?;
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let is_host = bare.parse::<std::net::IpAddr>().is_ok()
        || (!bare.is_empty() && bare.len() <= 253 && bare.split('.').all(|label| {
            !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        }));
    if !is_host {
        return Err(format!("{expected}: bad host {host:?}"));
    }
    Ok(AdvertiseHttp::At(bare.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertise_http_is_host_port_or_none_and_nothing_else() {
        assert_eq!(parse_advertise_http("none"), Ok(AdvertiseHttp::Off));
        assert_eq!(parse_advertise_http("127.0.0.1:18080"), Ok(AdvertiseHttp::At("127.0.0.1".into(), 18080)));
        assert_eq!(parse_advertise_http("control-plane.svc:80"), Ok(AdvertiseHttp::At("control-plane.svc".into(), 80)));
        assert_eq!(parse_advertise_http("[::1]:18080"), Ok(AdvertiseHttp::At("::1".into(), 18080)));
        for bad in ["127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:x", ":18080", "a b:80", "None", "off", "http://x:80"] {
            let error = parse_advertise_http(bad).expect_err(bad);
            assert!(error.contains("expected host:port"), "{bad}: {error}");
        }
    }
}
