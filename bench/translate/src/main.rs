//! `stagedoor-bench-translate`: how validation, translation and snapshots scale with the
//! registry. Synthetic registries of N services with M instances each, translated as
//! `serve` would, through the control plane's library (see bench/README.md).

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use stagedoor_control_plane::registry::LiveInstances;
use stagedoor_control_plane::registry::Registry;
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
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args.services, args.instances) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stagedoor-bench-translate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn synthetic_registry(services: usize, instances: usize) -> String {
    let mut yaml = String::from(
        "auth:\n  issuer: tickettoken\n  audience: tickettoken-platform\n  keys:\n    - algorithms: [HS256]\n      secret: bench-secret-bench-secret-bench-secret-0\n",
    );
    yaml.push_str("services:\n");
    for i in 0..services {
        yaml.push_str(&format!("  - name: svc{i}\n    routes: [{{ prefix: /api/v1/svc{i} }}]\n    instances:\n"));
        for j in 0..instances {
            yaml.push_str(&format!("      - {{ address: 10.{}.{}.{}, port: {} }}\n", i / 65536 % 256, i / 256 % 256, i % 256, 3000 + j));
        }
        yaml.push_str(&format!("    public_paths: [/api/v1/svc{i}/public/*]\n"));
    }
    yaml
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").to_owned())))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn run(sizes: &[usize], instances: usize) -> anyhow::Result<()> {
    println!("| services | instances | parse+validate ms | translate+snapshot ms | snapshot bytes | RSS MiB after |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let options = TranslateOptions {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
        wasm_path: String::from("/stagedoor.wasm"),
        control_plane_http: Some((String::from("127.0.0.1"), 18080)),
        control_plane_tls: true,
        rate_limit_service: None,
    };
    for &n in sizes {
        let yaml = synthetic_registry(n, instances);
        let start = Instant::now();
        let registry = Registry::parse("synthetic", &yaml)?;
        let parsed = start.elapsed();
        let start = Instant::now();
        let snapshot = stagedoor_control_plane::publish::build_snapshot(&registry, &LiveInstances::new(), &[], &options, None)?;
        let built = start.elapsed();
        let bytes: usize = snapshot.types.values().flat_map(|t| t.resources.values()).map(|a| a.value.len()).sum();
        println!(
            "| {n} | {} | {:.1} | {:.1} | {bytes} | {:.1} |",
            n * instances,
            parsed.as_secs_f64() * 1000.0,
            built.as_secs_f64() * 1000.0,
            rss_kib() as f64 / 1024.0
        );
    }
    Ok(())
}
