//! Command-line entry points. Errors become one clear line and a non-zero exit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::registry;
use crate::translate::TranslateOptions;

#[derive(Parser)]
#[command(name = "stagedoor", version, about = "Stagedoor: TicketToken's API gateway control plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve xDS (and the stagedoor.v1 API) to Envoys, following the registry file.
    Serve(ServeArgs),
    /// Run an echo upstream that answers every request with what it received: one
    /// (--port, --service), or one per loopback instance of a registry (--registry).
    Echo {
        #[arg(long, required_unless_present = "registry", requires = "service")]
        port: Option<u16>,
        #[arg(long)]
        service: Option<String>,
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        #[arg(long, conflicts_with = "port")]
        registry: Option<PathBuf>,
        /// Serve TLS with this certificate (PEM) and `--tls-key`, for upstream TLS tests.
        #[arg(long, requires = "tls_key", requires = "port")]
        tls_cert: Option<PathBuf>,
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// With `--tls-cert`: require a client certificate signed by this CA.
        #[arg(long, requires = "tls_cert")]
        tls_client_ca: Option<PathBuf>,
    },
    /// Validate a registry file, including the filter config it produces.
    Validate { file: PathBuf },
    /// Validate a registry file, show what it changes against the running control plane,
    /// and push it (the control plane writes it to its registry file).
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        #[command(flatten)]
        server: crate::client::ApiArgs,
        /// Show the changes only.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a development token signed with the registry's dev key, or revoke a token.
    #[command(args_conflicts_with_subcommands = true)]
    Token {
        #[command(subcommand)]
        action: Option<TokenAction>,
        #[command(flatten)]
        mint: MintArgs,
    },
    /// Register a live instance in Redis (with a TTL; --heartbeat keeps it alive, across
    /// Redis restarts, until SIGTERM or Ctrl-C, then deregisters it).
    Register {
        #[command(flatten)]
        instance: InstanceArgs,
        /// The registry the instance's service must be in (checked before Redis is touched).
        #[arg(long, env = "STAGEDOOR_REGISTRY", default_value = "registry/tickettoken.yaml")]
        registry: PathBuf,
        #[arg(long, default_value = "30s", value_parser = crate::token::parse_ttl)]
        ttl: std::time::Duration,
        #[arg(long)]
        heartbeat: bool,
    },
    /// Remove a live instance from Redis.
    Deregister {
        #[command(flatten)]
        instance: InstanceArgs,
    },
    /// Benchmark: translate synthetic registries of the given sizes (see bench/README.md).
    #[command(hide = true)]
    BenchTranslate {
        #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
        services: Vec<usize>,
        #[arg(long, default_value = "5")]
        instances: usize,
    },
    /// Print the filter config (JSON) the control plane would push for a registry.
    FilterConfig {
        #[arg(long, env = "STAGEDOOR_REGISTRY", default_value = "registry/tickettoken.yaml")]
        registry: PathBuf,
    },
    /// Development credentials for mutual TLS: `certs init`, `certs envoy`.
    Certs {
        #[command(subcommand)]
        action: CertsAction,
    },
    /// Show connected Envoys and the versions they run (asks a running control plane).
    Status {
        #[command(flatten)]
        server: crate::client::ApiArgs,
    },
}

#[derive(Subcommand)]
enum CertsAction {
    /// A development CA, the control plane's server certificate, the edge's HTTPS
    /// certificate (edge.pem, which the shipped registry serves), an Envoy client
    /// certificate and an operator client certificate. Keeps existing files unless --force.
    Init {
        #[arg(long, default_value = crate::tls::files::DEFAULT_DIR)]
        dir: PathBuf,
        /// More names (DNS or IP) the control plane and the edge are reached by, beside
        /// localhost, 127.0.0.1 and ::1 (e.g. `--san control-plane` in docker-compose).
        #[arg(long = "san")]
        sans: Vec<String>,
        /// The node id of the first Envoy's certificate.
        #[arg(long, default_value = "local")]
        node_id: String,
        /// The operator certificate's name (it shows in the audit log).
        #[arg(long, default_value = "operator")]
        operator: String,
        #[arg(long)]
        force: bool,
    },
    /// One more Envoy client certificate, for `--node-id`, signed by the CA in --dir.
    Envoy {
        #[arg(long, default_value = crate::tls::files::DEFAULT_DIR)]
        dir: PathBuf,
        #[arg(long)]
        node_id: String,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Put a token (or a bare jti) on the revocation list of a running control plane.
    Revoke {
        /// The token to revoke.
        #[arg(long, required_unless_present = "jti")]
        token: Option<String>,
        /// A jti to revoke.
        #[arg(long, conflicts_with = "token")]
        jti: Option<String>,
        #[command(flatten)]
        server: crate::client::ApiArgs,
    },
}

#[derive(clap::Args)]
struct InstanceArgs {
    #[arg(long)]
    service: String,
    /// The instance's IP address as Envoy reaches it.
    #[arg(long)]
    address: std::net::IpAddr,
    /// 1-65535 (a wider number is refused with the registry's message, not clap's).
    #[arg(long)]
    port: u32,
    #[arg(long, env = "STAGEDOOR_REDIS", default_value = "redis://127.0.0.1:6379")]
    redis: String,
}

#[derive(clap::Args)]
struct MintArgs {
    #[arg(long, env = "STAGEDOOR_REGISTRY", default_value = "registry/tickettoken.yaml")]
    registry: PathBuf,
    #[arg(long, default_value = "dev-user")]
    sub: String,
    #[arg(long, default_value = "dev-tenant")]
    tenant: String,
    #[arg(long, default_value = "customer")]
    role: String,
    /// Comma-separated venue ids (the `venues` claim).
    #[arg(long, value_delimiter = ',')]
    venues: Option<Vec<String>>,
    /// Comma-separated permissions; replaces the role's defaults.
    #[arg(long, value_delimiter = ',')]
    permissions: Option<Vec<String>>,
    #[arg(long, default_value = "15m", value_parser = crate::token::parse_ttl)]
    ttl: std::time::Duration,
    /// The `type` claim; anything but `access` is refused by the gateway.
    #[arg(long = "type", default_value = "access")]
    token_type: String,
}

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
    /// Redis with live instances (`stagedoor register`); absent: static instances only.
    #[arg(long, env = "STAGEDOOR_REDIS")]
    pub redis: Option<String>,
    /// Path of the compiled filter, as Envoy sees it.
    #[arg(long, env = "STAGEDOOR_WASM", default_value = "target/wasm32-wasip1/release/stagedoor_filter.wasm")]
    pub wasm: PathBuf,
    /// gRPC address for Envoy's RateLimitService (global rate limiting, same TLS as xDS, Envoy
    /// certificates only); absent: the registry's global limits take their failure modes.
    #[arg(long, env = "STAGEDOOR_RATELIMIT")]
    pub ratelimit: Option<SocketAddr>,
    /// Redis counting the global limits; default: --redis.
    #[arg(long, env = "STAGEDOOR_RATELIMIT_REDIS")]
    pub ratelimit_redis: Option<String>,
    /// How long the RateLimitService waits for Redis before the route's fail mode applies:
    /// under Envoy's timeout (20 ms by default), so the fallback is the service's, not Envoy's.
    #[arg(long, env = "STAGEDOOR_RATELIMIT_REDIS_TIMEOUT_MS", default_value_t = 15)]
    pub ratelimit_redis_timeout_ms: u64,
}

impl ServeArgs {
    pub fn ratelimit_redis_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.ratelimit_redis_timeout_ms.max(1))
    }

    pub fn translate_options(&self) -> TranslateOptions {
        // Envoy resolves a relative path against its own working directory, not ours.
        let wasm = std::fs::canonicalize(&self.wasm).unwrap_or_else(|_| self.wasm.clone());
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
            wasm_path: wasm.display().to_string(),
            control_plane_http,
            control_plane_tls: !self.insecure,
            rate_limit_service,
        }
    }
}

/// Where Envoy reaches the revocation feed, or `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdvertiseHttp {
    Off,
    At(String, u16),
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

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Validate { file } => validate(&file),
        Command::Serve(args) => run_async(crate::serve::serve(args)),
        Command::Echo { port, service, host, registry, tls_cert, tls_key, tls_client_ca } => match (tls_cert, tls_key, port, service.clone()) {
            (Some(cert), Some(key), Some(port), Some(service)) => run_async(async move {
                let tls = crate::echo::tls_config(&cert, &key, tls_client_ca.as_deref())?;
                crate::echo::serve_tls(SocketAddr::new(host, port), service, tls).await?;
                Ok(())
            }),
            _ => run_async(echo(port, service, host, registry)),
        },
        Command::Status { server } => run_async(status(server)),
        Command::Certs { action } => certs(action),
        Command::Apply { file, server, dry_run } => run_async(apply(file, server, dry_run)),
        Command::Register { instance: i, registry: file, ttl, heartbeat } => (|| {
            let registry = registry::load(&file)?;
            let live = registry::live::check_instance(Some(&registry), &i.service, &i.address.to_string(), i.port)?;
            let ttl = registry::live::check_ttl(ttl)?;
            run_async(async move {
                if heartbeat {
                    let instance = crate::discovery::redis_source::Instance {
                        service: live.service.clone(),
                        address: live.address.clone(),
                        port: live.port,
                    };
                    let signal = crate::discovery::heartbeat::run(&i.redis, &instance, ttl).await?;
                    println!("deregistered {}:{}:{} ({signal})", live.service, live.address, live.port);
                    return Ok(());
                }
                crate::discovery::redis_source::register(&i.redis, &live.service, &live.address, live.port, ttl).await?;
                println!("registered {}:{}:{}", live.service, live.address, live.port);
                Ok(())
            })
        })(),
        Command::Deregister { instance: i } => (|| {
            let live = registry::live::check_instance(None, &i.service, &i.address.to_string(), i.port)?;
            run_async(async move {
                crate::discovery::redis_source::deregister(&i.redis, &live.service, &live.address, live.port).await?;
                println!("deregistered {}:{}:{}", live.service, live.address, live.port);
                Ok(())
            })
        })(),
        Command::BenchTranslate { services, instances } => crate::scale::run(&services, instances),
        Command::FilterConfig { registry: file } => registry::load(&file).map_err(anyhow::Error::from).map(|registry| {
            println!("{}", crate::translate::filter_config(&registry, None).to_json());
        }),
        Command::Token { action: None, mint } => mint_token(&mint),
        Command::Token { action: Some(TokenAction::Revoke { token, jti, server }), .. } => {
            run_async(revoke(server, token.unwrap_or_default(), jti.unwrap_or_default()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stagedoor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STAGEDOOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?.block_on(fut)
}

async fn echo(
    port: Option<u16>,
    service: Option<String>,
    host: std::net::IpAddr,
    registry: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut upstreams: Vec<(SocketAddr, String)> = Vec::new();
    if let (Some(port), Some(service)) = (port, service) {
        upstreams.push((SocketAddr::new(host, port), service));
    }
    if let Some(file) = registry {
        for svc in registry::load(&file)?.services.values() {
            for inst in &svc.instances {
                // Only instances this machine can serve: the demo stack's loopback ones.
                if let Ok(ip) = inst.address.parse::<std::net::IpAddr>() {
                    if ip.is_loopback() {
                        upstreams.push((SocketAddr::new(host, inst.port), svc.name.clone()));
                    }
                }
            }
        }
    }
    // Any one failing to bind stops them all: a half-started demo stack misleads.
    futures::future::try_join_all(upstreams.into_iter().map(|(addr, name)| crate::echo::serve(addr, name))).await?;
    Ok(())
}

fn validate(file: &std::path::Path) -> anyhow::Result<()> {
    let registry = registry::load(file)?;
    let options = TranslateOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        wasm_path: String::from("/stagedoor.wasm"),
        control_plane_http: Some((String::from("127.0.0.1"), 18080)),
        control_plane_tls: true,
        rate_limit_service: None,
    };
    crate::publish::build_snapshot(&registry, &crate::discovery::LiveInstances::new(), &[], &options, None)?;
    println!("{}: valid ({} services, version {})", file.display(), registry.services.len(), registry.version);
    Ok(())
}

fn mint_token(args: &MintArgs) -> anyhow::Result<()> {
    let registry = registry::load(&args.registry)?;
    let request = crate::token::MintRequest {
        sub: args.sub.clone(),
        tenant: args.tenant.clone(),
        role: args.role.clone(),
        venues: args.venues.clone(),
        permissions: args.permissions.clone(),
        ttl: args.ttl,
        token_type: args.token_type.clone(),
    };
    let now = (crate::xds::status::unix_ms() / 1000) as i64;
    println!("{}", crate::token::mint(&registry, &request, now)?);
    Ok(())
}

/// The control plane's refusal as it wrote it (tonic's Display quotes and escapes it).
fn refused(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("the control plane refused ({:?}): {}", status.code(), status.message())
}

fn certs(action: CertsAction) -> anyhow::Result<()> {
    use crate::tls::files::CredentialDir;
    use crate::tls::generate;
    let outcomes = match action {
        CertsAction::Init { dir, sans, node_id, operator, force } => {
            let request = generate::InitRequest { sans: &sans, node_id: &node_id, operator: &operator, force };
            generate::init(&CredentialDir::new(dir), &request)?
        }
        CertsAction::Envoy { dir, node_id, force } => vec![generate::envoy(&CredentialDir::new(dir), &node_id, force)?],
    };
    for outcome in outcomes {
        println!("{outcome}");
    }
    Ok(())
}

async fn revoke(server: crate::client::ApiArgs, token: String, jti: String) -> anyhow::Result<()> {
    let mut client = crate::client::connect(&server).await?;
    let reply = client
        .revoke_token(stagedoor_proto::v1::RevokeTokenRequest { token, jti, expires_at_unix: 0 })
        .await
        .map_err(refused)?
        .into_inner();
    use stagedoor_proto::v1::Persistence;
    let persistence = match reply.persistence() {
        Persistence::Stored => String::from("stored in redis"),
        Persistence::Queued => format!("queued: {}; written back when it returns", reply.detail),
        Persistence::MemoryOnly => String::from("in memory only (no --redis): lost when the control plane restarts"),
        Persistence::Unspecified => String::from("persistence not reported"),
    };
    println!("revoked {} (cursor {}): {persistence}", reply.key, reply.cursor);
    Ok(())
}

async fn apply(file: PathBuf, server: crate::client::ApiArgs, dry_run: bool) -> anyhow::Result<()> {
    use stagedoor_proto::v1::{ApplyRegistryRequest, GetRegistryRequest};
    let text = std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let proposed = registry::Registry::parse(&file.display().to_string(), &text)?;
    // The served registry comes back re-serialized (block YAML), which can be larger than
    // the compact file that loaded; the request side is bounded by the registry's limit.
    let mut client = crate::client::connect(&server).await?.max_decoding_message_size(4 * registry::input::MAX_REGISTRY_BYTES);
    let current = client.get_registry(GetRegistryRequest {}).await.map_err(refused)?.into_inner();
    // The served registry comes back with literal secrets redacted; compare services and
    // sections, and let the control plane judge the rest.
    // Placeholders stand in for the redacted and environment secrets: the diff compares
    // services and where secrets come from, never their values.
    let placeholder = "x".repeat(32);
    let served_yaml = current.yaml.replace(registry::REDACTED, &placeholder);
    let served = registry::Registry::parse_with_env("served registry", &served_yaml, &|_| Some(placeholder.clone()))?;
    let changes = crate::diff::diff(&served, &proposed);
    print!("{}", crate::diff::render(&changes, &crate::diff::global_changes(&served, &proposed)));
    let reply = client.apply_registry(ApplyRegistryRequest { yaml: text, dry_run }).await.map_err(refused)?.into_inner();
    if dry_run {
        println!("dry run: nothing pushed (registry {} -> {})", reply.previous_version, reply.version);
    } else if reply.changed {
        println!("applied: registry {} -> {}, snapshot {}", reply.previous_version, reply.version, reply.snapshot_version);
    } else {
        println!("nothing to push: Envoys already run registry {}", reply.version);
    }
    Ok(())
}

async fn status(server: crate::client::ApiArgs) -> anyhow::Result<()> {
    let mut client = crate::client::connect(&server).await?;
    let reply = client.list_envoys(stagedoor_proto::v1::ListEnvoysRequest {}).await.map_err(refused)?.into_inner();
    println!("snapshot {}: {} Envoy(s) connected", reply.snapshot_version, reply.envoys.len());
    for envoy in reply.envoys {
        println!("- node {} (cluster {}, {}, stream {})", envoy.node_id, envoy.node_cluster, envoy.protocol, envoy.stream_id);
        for t in envoy.types {
            let nack = t.last_nack.map(|n| format!("; last NACK of {}: {}", n.version, n.detail)).unwrap_or_default();
            println!("    {}: ACKed {}{}", t.r#type, if t.acked_version.is_empty() { "-" } else { &t.acked_version }, nack);
        }
    }
    Ok(())
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
