//! The command line: subcommands and flags (clap), each dispatched to the library.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use stagedoor_control_plane::commands::{self, InstanceTarget};
use stagedoor_control_plane::serve_args::ServeArgs;

#[derive(Parser)]
#[command(name = "stagedoor", version, about = "Stagedoor: TicketToken's API gateway control plane")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve xDS (and the stagedoor.v1 API) to Envoys, following the registry file.
    Serve(ServeArgs),
    /// Validate a registry file, including the filter config it produces; with --envoy,
    /// also run the snapshot it makes through Envoy's own `envoy --mode validate`.
    Validate {
        file: PathBuf,
        /// Render the snapshot as a static Envoy bootstrap and have Envoy validate it (a
        /// refusal names the registry entry behind it).
        #[arg(long)]
        envoy: bool,
        /// The Envoy binary (default: `envoy` on PATH).
        #[arg(long, requires = "envoy")]
        envoy_bin: Option<PathBuf>,
        /// The filter module Envoy loads (and runs the filter config through) in validate mode.
        #[arg(long, env = "STAGEDOOR_WASM", default_value = "target/wasm32-wasip1/release/stagedoor_filter.wasm")]
        wasm: PathBuf,
        /// The limits `serve` holds the registry to (the same flags).
        #[command(flatten)]
        limits: stagedoor_control_plane::serve_args::LimitArgs,
    },
    /// Validate a registry file, show what it changes against the running control plane,
    /// and push it (the control plane writes it to its registry file).
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        #[command(flatten)]
        server: stagedoor_control_plane::client::ApiArgs,
        /// Show the changes only.
        #[arg(long)]
        dry_run: bool,
    },
    /// With --redis on the control plane: the versions of the registry Redis keeps.
    History {
        #[command(flatten)]
        server: stagedoor_control_plane::client::ApiArgs,
    },
    /// With --redis on the control plane: apply an older version's content again, as a new
    /// version (the same compare-and-set as apply).
    Rollback {
        /// The version to restore (`stagedoor history` lists them).
        #[arg(long = "to")]
        to: u64,
        #[command(flatten)]
        server: stagedoor_control_plane::client::ApiArgs,
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
        #[arg(long, default_value = "30s", value_parser = stagedoor_control_plane::token::parse_ttl)]
        ttl: std::time::Duration,
        #[arg(long)]
        heartbeat: bool,
    },
    /// Drop cached answers in every Envoy: of one route, one tenant, one surrogate key, or
    /// where the given ones meet (at least one).
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Remove a live instance from Redis.
    Deregister {
        #[command(flatten)]
        instance: InstanceArgs,
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
    /// Show every Envoy's state per xDS type and the NACKs in force, like `istioctl
    /// proxy-status` (asks a running control plane).
    Status {
        #[command(flatten)]
        server: stagedoor_control_plane::client::ApiArgs,
        /// One Envoy's detail: versions, timings, NACKs with the registry entries, pushes.
        #[arg(long)]
        node: Option<String>,
        /// With --node: that Envoy's admin base URL (http://127.0.0.1:9901); its
        /// /config_dump is compared with what the control plane sent and it ACKed, and
        /// each difference printed (nothing when it runs exactly that).
        #[arg(long, requires = "node")]
        config_dump: Option<String>,
        /// Output format: table (default) or json.
        #[arg(short = 'o', long = "output", default_value = "table", value_parser = ["table", "json"])]
        output: String,
        /// Wait until every connected Envoy ACKed the current snapshot; exit non-zero at
        /// once on a NACK, or after --timeout while any is PENDING (or none is connected).
        #[arg(long)]
        wait_synced: bool,
        #[arg(long, default_value = "30s", value_parser = stagedoor_control_plane::token::parse_ttl)]
        timeout: std::time::Duration,
    },
}

#[derive(Subcommand)]
enum CertsAction {
    /// A development CA, the control plane's server certificate, the edge's HTTPS
    /// certificate (edge.pem, which the shipped registry serves), an Envoy client
    /// certificate and an operator client certificate. Keeps existing files unless --force.
    Init {
        #[arg(long, default_value = stagedoor_control_plane::tls::files::DEFAULT_DIR)]
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
        #[arg(long, default_value = stagedoor_control_plane::tls::files::DEFAULT_DIR)]
        dir: PathBuf,
        #[arg(long)]
        node_id: String,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum CacheAction {
    Purge {
        #[arg(long, default_value = "")]
        route: String,
        #[arg(long, default_value = "")]
        tenant: String,
        #[arg(long, default_value = "")]
        surrogate_key: String,
        #[command(flatten)]
        server: stagedoor_control_plane::client::ApiArgs,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Put a token (or a bare jti) on the revocation list of a running control plane.
    Revoke {
        /// The token to revoke.
        #[arg(long, required_unless_present_any = ["jti", "family"])]
        token: Option<String>,
        /// A jti to revoke.
        #[arg(long, conflicts_with_all = ["token", "family"])]
        jti: Option<String>,
        /// A refresh-token family (the `fid` claim): every refresh token of it and every
        /// access token minted from it, until the family's absolute expiry.
        #[arg(long, conflicts_with = "token")]
        family: Option<String>,
        #[command(flatten)]
        server: stagedoor_control_plane::client::ApiArgs,
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
    #[arg(long, env = "STAGEDOOR_REDIS", default_value = "redis://127.0.0.1:6379", value_parser = stagedoor_control_plane::serve_args::RedisUrlArg)]
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
    #[arg(long, default_value = "15m", value_parser = stagedoor_control_plane::token::parse_ttl)]
    ttl: std::time::Duration,
    /// The `type` claim; anything but `access` is refused by the gateway.
    #[arg(long = "type", default_value = "access")]
    token_type: String,
    /// Print the first refresh token of a new family instead (the registry's
    /// `token_endpoint.refresh_key`), for POST /api/v1/auth/refresh.
    #[arg(long, conflicts_with_all = ["token_type", "venues", "permissions", "ttl"])]
    refresh: bool,
}

impl Cli {
    /// Runs the subcommand; its error is for `main` to print.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Validate { file, envoy, envoy_bin, wasm, limits } => {
                let envoy = envoy.then_some(commands::EnvoyValidation { envoy_bin, wasm });
                commands::validate(&file, envoy.as_ref(), limits.limits())
            }
            Command::Serve(args) => run_async(stagedoor_control_plane::serve::serve(args)),
            Command::Status { server, node, config_dump, output, wait_synced, timeout } => {
                let request = commands::StatusRequest { node, config_dump, json: output == "json", wait_synced: wait_synced.then_some(timeout) };
                run_async(async move { commands::status(&server, &request).await })
            }
            Command::Certs { action: CertsAction::Init { dir, sans, node_id, operator, force } } => {
                let request = stagedoor_control_plane::tls::generate::InitRequest { sans: &sans, node_id: &node_id, operator: &operator, force };
                commands::certs_init(dir, &request)
            }
            Command::Certs { action: CertsAction::Envoy { dir, node_id, force } } => commands::certs_envoy(dir, &node_id, force),
            Command::Apply { file, server, dry_run } => run_async(commands::apply(&file, &server, dry_run)),
            Command::History { server } => run_async(commands::history(&server)),
            Command::Rollback { to, server } => run_async(commands::rollback(&server, to)),
            Command::Register { instance, registry, ttl, heartbeat } => {
                run_async(async move { commands::register(&instance.into(), &registry, ttl, heartbeat).await })
            }
            Command::Cache { action: CacheAction::Purge { route, tenant, surrogate_key, server } } => {
                run_async(commands::purge(&server, route, tenant, surrogate_key))
            }
            Command::Deregister { instance } => run_async(async move { commands::deregister(&instance.into()).await }),
            Command::FilterConfig { registry } => commands::print_filter_config(&registry),
            Command::Token { action: None, mint } if mint.refresh => {
                commands::mint_refresh_token(&mint.registry, &mint.sub, &mint.tenant, &mint.role)
            }
            Command::Token { action: None, mint } => commands::mint_token(&mint.registry.clone(), &mint.into()),
            Command::Token { action: Some(TokenAction::Revoke { token, jti, family, server }), .. } => {
                let jti = match family {
                    Some(fid) => stagedoor_filter_core::revocation::family_key(&fid),
                    None => jti.unwrap_or_default(),
                };
                run_async(commands::revoke(&server, token.unwrap_or_default(), jti))
            }
        }
    }
}

impl From<InstanceArgs> for InstanceTarget {
    fn from(InstanceArgs { service, address, port, redis }: InstanceArgs) -> Self {
        Self { service, address, port, redis }
    }
}

impl From<MintArgs> for stagedoor_control_plane::token::MintRequest {
    fn from(MintArgs { registry: _, sub, tenant, role, venues, permissions, ttl, token_type, refresh: _ }: MintArgs) -> Self {
        Self { sub, tenant, role, venues, permissions, ttl, token_type }
    }
}

/// Two workers: the control plane's work is I/O and the translation it runs off them.
fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?.block_on(fut)
}
