//! `stagedoor-echo`: echo upstreams for tests, benchmarks and the demo stack, one
//! (`--port`, `--service`, optionally over TLS) or one per loopback instance of a registry
//! (`--registry`). Not part of the gateway: it lives outside the `stagedoor` binary.

mod echo;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Run an echo upstream that answers every request with what it received: one (--port,
/// --service), or one per loopback instance of a registry (--registry).
#[derive(Parser)]
#[command(name = "stagedoor-echo", version)]
struct Args {
    #[arg(long, required_unless_present = "registry", requires = "service")]
    port: Option<u16>,
    #[arg(long)]
    service: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
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
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("STAGEDOOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let run = || tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?.block_on(run(args));
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stagedoor-echo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let Args { port, service, host, registry, tls_cert, tls_key, tls_client_ca } = args;
    if let (Some(cert), Some(key), Some(port), Some(service)) = (tls_cert, tls_key, port, service.clone()) {
        let tls = echo::tls_config(&cert, &key, tls_client_ca.as_deref())?;
        echo::serve_tls(SocketAddr::new(host, port), service, tls).await?;
        return Ok(());
    }
    let mut upstreams: Vec<(SocketAddr, String)> = Vec::new();
    if let (Some(port), Some(service)) = (port, service) {
        upstreams.push((SocketAddr::new(host, port), service));
    }
    if let Some(file) = registry {
        upstreams.extend(loopback_instances(&file, host)?);
    }
    // Any one failing to bind stops them all: a half-started demo stack misleads.
    futures::future::try_join_all(upstreams.into_iter().map(|(addr, name)| echo::serve(addr, name))).await?;
    Ok(())
}

/// The registry's instances this machine can serve (the demo stack's loopback ones), each
/// at its port on `host`.
fn loopback_instances(file: &std::path::Path, host: IpAddr) -> anyhow::Result<Vec<(SocketAddr, String)>> {
    let registry = stagedoor_control_plane::registry::load(file)?;
    let loopback = |address: &str| address.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    Ok(registry
        .services
        .values()
        .flat_map(|svc| svc.instances.iter().filter(|i| loopback(&i.address)).map(|i| (SocketAddr::new(host, i.port), svc.name.clone())))
        .collect())
}
