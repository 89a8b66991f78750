//! `stagedoor-bench-translate`: how validation, translation and snapshots scale with the
//! registry, and what one change costs. Synthetic registries of N services with M instances
//! each, translated as `serve` would, through the control plane's library (bench/README.md).
//! Each size runs in a child process of its own, so its RSS is that size's alone.

use std::process::ExitCode;
use std::time::Duration;

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
        "| services | instances | parse+validate | filter compile | cold translate+snapshot | prefix edit (median / max) | timeout edit (median / max) | instance change (median / max) | snapshot bytes | RSS MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
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

/// This thread's CPU time: what the work cost, whoever else shares the cores (wall time on
/// a shared machine counts their turns too).
fn cpu_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), u32::try_from(t.tv_nsec).unwrap_or(0))
}

/// CPU time of `f`, and its result.
fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = cpu_now();
    let out = f();
    (cpu_now().saturating_sub(start), out)
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
        hmac_wasm_path: None,
        control_plane_http: Some((String::from("127.0.0.1"), 18080)),
        control_plane_tls: true,
        rate_limit_service: None,
        limits: stagedoor_control_plane::registry::limits::Limits::default(),
    };
    let yaml = synthetic_registry(n, instances);
    let (parsed, registry) = timed(|| Registry::parse("synthetic", &yaml));
    let registry = registry?;
    drop(yaml);
    let (compiled, checked) = timed(|| stagedoor_control_plane::translate::check(&registry, None));
    checked?;

    let (cold, built) = timed(|| Publisher::new(registry.clone(), options.clone()));
    let (mut publisher, rx) = built?;
    let bytes: usize = rx.borrow().types.values().flat_map(|t| t.resources.values()).map(|a| a.value.len()).sum();

    // One service edited at a time, as an apply of a registry that differs in one entry
    // (already parsed, as after validation): a new prefix (its routes and its part of the
    // filter config), or a new timeout (its routes only).
    let mut edit = |k: usize, change: &dyn Fn(&mut stagedoor_control_plane::registry::ServiceSpec, usize)| {
        let mut edited = registry.clone();
        let name = format!("svc{}", (k * 7919) % n);
        if let Some(svc) = edited.services.get_mut(&name) {
            change(std::sync::Arc::make_mut(svc), k);
        }
        edited.version = format!("edit-{k}");
        let (took, changed) = timed(|| publisher.apply(edited));
        anyhow::ensure!(changed?, "an edit of {name} published nothing");
        Ok(took)
    };
    let prefix_times = (0..changes)
        .map(|k| edit(k, &|svc, k| svc.routes[0].prefix = format!("/api/v2/{}-{k}", svc.name)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let timeout_times = (0..changes)
        .map(|k| edit(k, &|svc, k| svc.traffic.timeout_ms = Some(20_000 + k as u64)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // One live instance added to one service at a time, as discovery reports it.
    let mut instance_times = Vec::new();
    for k in 0..changes {
        let mut live = LiveInstances::new();
        let name = format!("svc{}", (k * 104_729) % n);
        live.entry(name.clone()).or_default().insert(InstanceSpec { address: address(n + k), port: 4000 });
        let (took, changed) = timed(|| publisher.set_live_instances(live));
        anyhow::ensure!(changed?, "an instance change of {name} published nothing");
        instance_times.push(took);
    }
    let rss = rss_kib();
    phases(&publisher, n)?;
    let (prefix_median, prefix_max) = median_max(prefix_times);
    let (timeout_median, timeout_max) = median_max(timeout_times);
    let (instance_median, instance_max) = median_max(instance_times);
    println!(
        "| {n} | {} | {:.1} | {:.1} | {:.1} | {prefix_median:.2} / {prefix_max:.2} | {timeout_median:.2} / {timeout_max:.2} | {instance_median:.2} / {instance_max:.2} | {bytes} | {:.1} |",
        n * instances,
        ms(parsed),
        ms(compiled),
        ms(cold),
        rss as f64 / 1024.0
    );
    Ok(())
}

/// Where the time of a cold translation, an instance change and the two edits goes, phase
/// by phase, through the library calls `Publisher` makes (to stderr, for
/// bench/results-scale.md): the translation, the snapshot (its consistency check
/// included), and for an edit the registry it replaces being freed.
fn phases(publisher: &Publisher, n: usize) -> anyhow::Result<()> {
    use stagedoor_control_plane::registry::ServiceSpec;
    use stagedoor_control_plane::snapshot::Snapshot;
    use stagedoor_control_plane::translate::{translate_incremental, TranslateCache};
    let current = publisher.current();
    let options = publisher.options();
    let registry = publisher.registry();
    let split = |what: &str, registry: &Registry, live: &LiveInstances, cache: &TranslateCache, previous: Option<&Snapshot>| {
        let (translate, translated) = timed(|| translate_incremental(registry, live, &[], options, cache));
        let (translation, cache) = translated?;
        let (full_check, checked) = timed(|| translation.check());
        checked?;
        let (snapshot, built) = timed(|| Snapshot::build(translation, cache, &registry.version, "v", previous));
        built?;
        eprintln!(
            "{n} services, {what}: translate {:.2} ms, snapshot (its check included) {:.2} ms; a full consistency check {:.2} ms",
            ms(translate),
            ms(snapshot),
            ms(full_check)
        );
        anyhow::Ok(())
    };
    split("cold", registry, publisher.live(), &TranslateCache::default(), None)?;
    let mut live = publisher.live().clone();
    live.entry(format!("svc{}", n / 2)).or_default().insert(InstanceSpec { address: address(n + 99), port: 4001 });
    split("one instance change", registry, &live, &current.cache, Some(&current))?;
    let edit = |change: &dyn Fn(&mut ServiceSpec)| {
        let mut edited = registry.clone();
        if let Some(svc) = edited.services.get_mut(&format!("svc{}", n / 3)) {
            change(std::sync::Arc::make_mut(svc));
        }
        edited.version = String::from("phases");
        edited
    };
    let edited = edit(&|svc| svc.traffic.timeout_ms = Some(12_345));
    split("one timeout edit", &edited, publisher.live(), &current.cache, Some(&current))?;
    let edited = edit(&|svc| svc.routes[0].prefix = format!("/api/v3/{}", svc.name));
    split("one prefix edit", &edited, publisher.live(), &current.cache, Some(&current))?;
    let (freed, ()) = timed(|| drop(edited));
    eprintln!("{n} services: freeing the registry an edit replaces {:.2} ms", ms(freed));
    // A registry as a parse makes it (no entry shared with the current one), one service
    // changed: `Publisher::apply` rebases it first, comparing every entry once.
    let mut parsed = Registry { services: registry.services.iter().map(|(k, v)| (k.clone(), std::sync::Arc::new((**v).clone()))).collect(), ..registry.clone() };
    if let Some(svc) = parsed.services.get_mut(&format!("svc{}", n / 5)) {
        std::sync::Arc::make_mut(svc).traffic.timeout_ms = Some(23_456);
    }
    let (rebase, _rebased) = timed(|| parsed.rebased_on(registry));
    eprintln!("{n} services: a parsed registry rebased on the current one (every entry compared) {:.2} ms", ms(rebase));
    Ok(())
}
