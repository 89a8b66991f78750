//! `stagedoor-xds-load`: N simulated Envoys on ADS, for the reconnect-storm benchmark
//! (bench/reconnect.py). 200 real Envoys do not fit in memory; what a reconnect storm costs
//! the control plane is the streams, the certificates and the pushes, which this reproduces:
//! each stream has its own TLS connection under its own Envoy certificate
//! (`stagedoor certs envoy --node-id <prefix><i>`), a distinct node id, subscribes to every
//! type and ACKs every response. Events go to stdout as JSON lines (see `report`).
//!
//! Stdin drives it: a line `go` releases the streams held since their loss
//! (`--hold-reconnects`), so a benchmark can restart the control plane, let a real Envoy
//! reconnect first and then start the storm at a known instant; end of stdin stops the tool,
//! and so does `--max-seconds`. Not part of the gateway.

mod backoff;
mod report;
mod stream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Parser;
use stagedoor_control_plane::resources::type_url;
use stagedoor_control_plane::tls::files::CredentialDir;
use tokio::sync::{mpsc, watch};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::report::{unix_ms, Event, Tally};
use crate::stream::{SimulatedEnvoy, CONNECT_TIMEOUT};

/// Open N ADS streams with distinct node ids and ACK every response, as Envoys would.
#[derive(Parser)]
#[command(name = "stagedoor-xds-load", version)]
struct Args {
    /// The control plane's xDS address.
    #[arg(long)]
    xds: SocketAddr,
    /// The credential directory: ca.pem and envoy-<node id>.pem / -key.pem for every stream.
    #[arg(long)]
    tls_dir: PathBuf,
    #[arg(long, default_value_t = 200)]
    streams: usize,
    /// Node ids are this prefix and the stream's index.
    #[arg(long, default_value = "load-")]
    node_prefix: String,
    /// The types each stream subscribes to (short names); synced once each is ACKed.
    #[arg(long, value_delimiter = ',', default_value = "CDS,EDS,LDS,RDS,ECDS")]
    types: Vec<String>,
    /// A lost stream reconnects only after a `go` line on stdin.
    #[arg(long)]
    hold_reconnects: bool,
    /// Stop after this long, whatever happens.
    #[arg(long, default_value_t = 600)]
    max_seconds: u64,
}

fn endpoint(args: &Args, node_id: &str) -> anyhow::Result<Endpoint> {
    let dir = CredentialDir::new(&args.tls_dir);
    let read = |path: &std::path::Path| std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()));
    let pair = dir.envoy(node_id);
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&dir.ca().cert)?))
        .identity(Identity::from_pem(read(&pair.cert)?, read(&pair.key)?));
    Ok(Endpoint::from_shared(format!("https://{}", args.xds))?.tls_config(tls)?.connect_timeout(CONNECT_TIMEOUT))
}

/// Stdin's lines, read on a thread of their own (tokio's stdin is a feature the workspace
/// does not build); the channel closes at the end of stdin.
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

async fn run(args: Args) -> anyhow::Result<()> {
    let type_urls = args
        .types
        .iter()
        .map(|t| type_url::from_short(t).map(str::to_owned).ok_or_else(|| anyhow!("--types: {t:?} is not one of CDS, EDS, LDS, RDS, ECDS, SDS")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (release, released) = watch::channel(0u64);
    let mut streams = tokio::task::JoinSet::new();
    for index in 0..args.streams {
        let node_id = format!("{}{index}", args.node_prefix);
        let envoy = SimulatedEnvoy {
            index,
            endpoint: endpoint(&args, &node_id)?,
            node_id,
            type_urls: type_urls.clone(),
            hold_reconnects: args.hold_reconnects,
        };
        streams.spawn(envoy.run(events_tx.clone(), released.clone()));
    }
    drop(events_tx);
    let mut stdin = stdin_lines();
    let mut tally = Tally::new(args.streams);
    let deadline = tokio::time::sleep(Duration::from_secs(args.max_seconds));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event): Option<Event> = event else { return Ok(()) };
                println!("{}", event.to_json());
                if tally.apply(&event) {
                    println!("{}", serde_json::json!({"event": "all_synced", "unix_ms": unix_ms(), "streams": tally.synced()}));
                }
            }
            line = stdin.recv() => match line {
                Some(line) if line.trim() == "go" => {
                    release.send_modify(|generation| *generation += 1);
                    println!("{}", serde_json::json!({"event": "released", "unix_ms": unix_ms()}));
                }
                Some(_) => {}
                // The benchmark went away (or closed stdin to stop us).
                None => return Ok(()),
            },
            () = &mut deadline => {
                eprintln!("stagedoor-xds-load: --max-seconds {} passed, stopping", args.max_seconds);
                return Ok(());
            }
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("stagedoor-xds-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(args));
    // The streams are endless: do not wait for them.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stagedoor-xds-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}
