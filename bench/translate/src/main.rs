//! `stagedoor-bench-translate`: how validation, translation and snapshots scale with the
//! registry, and what one change costs. Synthetic registries of N services with M instances
//! each, translated as `serve` would, through the control plane's library (bench/README.md).
//! Each size runs in a child process of its own, so its RSS is that size's alone.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use stagedoor_control_plane::publish::Publisher;
use stagedoor_control_plane::registry::{InstanceSpec, LiveInstances, Registry};
use stagedoor_control_plane::translate::TranslateOptions;

#[derive(Parser)]
#[command(name = "stagedoor-bench-translate", about = "Translate synthetic registries of the given sizes")]
struct Args {
    /// Registry sizes, in services.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    services: Vec<usize>,
    /// Static instances per service.
    #[arg(long, default_value = "5")]
    instances: usize,
    /// How many one-service changes (and as many instance changes) to time per size.
    #[arg(long, default_value = "20")]
    changes: usize,
    /// Run one size in this process (what the parent runs each size as).
    #[arg(long, hide = true)]
    one: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.one {
        Some(n) => run_one(n, args.instances, args.changes),
        None => run_each(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stagedoor-bench-translate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_each(args: &Args) -> anyhow::Result<()> {
    println!(
        "| services | instances | parse+validate ms | filter compile ms | cold translate+snapshot ms | one-service change ms (median / max) | instance change ms (median / max) | snapshot bytes | RSS MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let me = std::env::current_exe()?;
    for &n in &args.services {
        let status = std::process::Command::new(&me)
            .args(["--one", &n.to_string(), "--instances", &args.instances.to_string(), "--changes", &args.changes.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "the run at {n} services failed: {status}");
    }
    Ok(())
}

fn synthetic_registry(services: usize, instances: usize) -> String {
    let mut yaml = String::from(
        "auth:\n  issuer: tickettoken\n  audience: tickettoken-platform\n  keys:\n    - algorithms: [HS256]\n      secret: bench-secret-bench-secret-bench-secret-0\n",
    );
    yaml.push_str("services:\n");
    for i in 0..services {
        yaml.push_str(&format!("  - name: svc{i}\n    routes: [{{ prefix: /api/v1/svc{i} }}]\n    instances:\n"));
        for j in 0..instances {
            yaml.push_str(&format!("      - {{ address: {}, port: {} }}\n", address(i), 3000 + j));
        }
        yaml.push_str(&format!("    public_paths: [/api/v1/svc{i}/public/*]\n"));
    }
    yaml
}

fn address(i: usize) -> String {
    format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").to_owned())))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median_max(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let median = times.get(times.len() / 2).copied().unwrap_or_default();
    (ms(median), ms(times.last().copied().unwrap_or_default()))
}

fn run_one(n: usize, instances: usize, changes: usize) -> anyhow::Result<()> {
    let options = TranslateOptions {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
        wasm_path: String::from("/stagedoor.wasm"),
        control_plane_http: Some((String::from("127.0.0.1"), 18080)),
        control_plane_tls: true,
        rate_limit_service: None,
    };
    let yaml = synthetic_registry(n, instances);
    let start = Instant::now();
    let registry = Registry::parse("synthetic", &yaml)?;
    let parsed = start.elapsed();
    drop(yaml);
    let start = Instant::now();
    stagedoor_control_plane::translate::check(&registry, None)?;
    let compiled = start.elapsed();

    let start = Instant::now();
    let (mut publisher, rx) = Publisher::new(registry.clone(), options)?;
    let cold = start.elapsed();
    let bytes: usize = rx.borrow().types.values().flat_map(|t| t.resources.values()).map(|a| a.value.len()).sum();

    // One service edited at a time (a new prefix, then back), as an apply of a registry
    // that differs in one entry: the registry is already parsed, as after validation.
    let mut service_times = Vec::new();
    for k in 0..changes {
        let mut edited = registry.clone();
        let name = format!("svc{}", (k * 7919) % n);
        if let Some(svc) = edited.services.get_mut(&name) {
            svc.routes[0].prefix = format!("/api/v2/{name}-{k}");
        }
        edited.version = format!("edit-{k}");
        let start = Instant::now();
        let changed = publisher.apply(edited)?;
        service_times.push(start.elapsed());
        anyhow::ensure!(changed, "an edit of {name} published nothing");
    }
    // One live instance added to one service at a time, as discovery reports it.
    let mut instance_times = Vec::new();
    for k in 0..changes {
        let mut live = LiveInstances::new();
        let name = format!("svc{}", (k * 104_729) % n);
        live.entry(name.clone()).or_default().insert(InstanceSpec { address: address(n + k), port: 4000 });
        let start = Instant::now();
        let changed = publisher.set_live_instances(live)?;
        instance_times.push(start.elapsed());
        anyhow::ensure!(changed, "an instance change of {name} published nothing");
    }
    let (service_median, service_max) = median_max(service_times);
    let (instance_median, instance_max) = median_max(instance_times);
    println!(
        "| {n} | {} | {:.1} | {:.1} | {:.1} | {service_median:.2} / {service_max:.2} | {instance_median:.2} / {instance_max:.2} | {bytes} | {:.1} |",
        n * instances,
        ms(parsed),
        ms(compiled),
        ms(cold),
        rss_kib() as f64 / 1024.0
    );
    Ok(())
}
