#!/usr/bin/env python3
"""What global rate limiting adds to a request, in one run: the same gateway (`stagedoor serve`
over ADS with mutual TLS, Envoy 1.40 --concurrency 1, the Stagedoor filter) without and with a
global limit, the second asking the control plane's RateLimitService, which counts in a real
redis-server (one EVALSHA per request).

Workload: GET /api/v1/venues/v1 with one HS256 token (one user, so one Redis key) under wrk
(1 thread, --connections), the limit set so high that nothing is refused (every request pays
the full path: filter -> ratelimit filter -> gRPC -> Redis script -> reply headers). Rounds
alternate the two gateways; the table gives the median round. Redis commands per request come
from INFO commandstats over the limited rounds (EVALSHA per request, and the calls inside the
script). The control plane is whatever --bin is: the debug build by default, so the limiter's
own CPU is a debug build's; pass --bin target/release/stagedoor for release figures.

Bounded: --rounds x --seconds under wrk, every wait has a deadline. Kills only what it started.

--release is --bin target/release/stagedoor (build it first: cargo build --release -p
stagedoor-control-plane). --throughput also measures the RateLimitService alone, no Envoy in
the path (tests/tests/ratelimit_throughput.rs: 16 calls in flight over one gRPC channel for
5 s, at most 200,000 calls, against a real Redis), and adds its line to the report.

Usage: bench/ratelimit_cost.py [--rounds 3] [--seconds 5] [--connections 8] [--bin PATH | --release]
                               [--throughput] [--out bench/results-ratelimit.md]
"""

import argparse
import contextlib
import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import filter_cost as fc  # noqa: E402  (ports, the upstream Envoy, wrk and its latency parsing)
import deployed_cost as dc  # noqa: E402  (the bench registry, tokens, ADS bootstraps)

LIMITS = """global_rate_limit:
  salt: bench-salt
  timeout_ms: {timeout_ms}
  limits:
    - {{ name: api, requests: 100000000, period_ms: 60000, routes: [/api/v1/venues] }}
"""


def serve(binary, workdir, name, registry, tls_dir, processes, extra):
    ports = {k: fc.free_port() for k in ("xds", "http", "metrics", "listen")}
    log = open(os.path.join(workdir, f"control-plane-{name}.log"), "w")
    process = subprocess.Popen(
        [binary, "serve", "--registry", registry, "--xds", f"127.0.0.1:{ports['xds']}", "--http", f"127.0.0.1:{ports['http']}",
         "--metrics", f"127.0.0.1:{ports['metrics']}", "--tls-dir", tls_dir, "--listen", f"127.0.0.1:{ports['listen']}",
         "--wasm", fc.WASM, *extra], stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "NO_COLOR": "1"})
    processes.append(process)
    deadline = time.time() + 60
    while time.time() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", ports["metrics"], timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return ports
        time.sleep(0.3)
    raise SystemExit(f"control plane {name} never answered /healthz")


def start_envoy(workdir, node, ports, tls_dir, processes):
    class Cp:
        xds = ports["xds"]
    admin = fc.free_port()
    bootstrap = dc.ads_bootstrap(workdir, node, admin, Cp, tls_dir)
    log = open(os.path.join(workdir, f"envoy-{node}.log"), "w")
    processes.append(subprocess.Popen(
        ["taskset", "-c", "0", "envoy", "-c", bootstrap, "--concurrency", "1", "--disable-hot-restart", "-l", "warning"],
        stdout=subprocess.DEVNULL, stderr=log))
    return admin


def redis_cli(port, *args):
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--raw", *args],
                          capture_output=True, text=True, timeout=10, check=True).stdout


def commandstats(port):
    stats = {}
    for line in redis_cli(port, "INFO", "commandstats").splitlines():
        m = re.match(r"cmdstat_(\w+):calls=(\d+)", line)
        if m:
            stats[m.group(1)] = int(m.group(2))
    return stats


def wrk(port, seconds, token, connections):
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
         "-H", f"Authorization: Bearer {token}", f"http://127.0.0.1:{port}/api/v1/venues/v1"],
        capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"gateway on {port}: {non2xx.group(1)} non-2xx responses; the configuration is wrong")
    return {"requests": requests, "rps": requests / seconds, "p50": fc.parse_latency(out, "50%"), "p99": fc.parse_latency(out, "99%")}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--timeout-ms", type=int, default=20, help="the registry's timeout_ms (Envoy's wait for the limiter)")
    parser.add_argument("--bin", default=fc.BIN)
    parser.add_argument("--release", action="store_true", help="--bin target/release/stagedoor")
    parser.add_argument("--throughput", action="store_true", help="also the RateLimitService alone (a gRPC load client)")
    parser.add_argument("--out", default=os.path.join(fc.ROOT, "bench/results-ratelimit.md"))
    args = parser.parse_args()
    if args.release:
        args.bin = os.path.join(fc.ROOT, "target/release/stagedoor")
        if not os.path.exists(args.bin):
            raise SystemExit(f"{args.bin} is missing: cargo build --release -p stagedoor-control-plane")
    processes = []
    workdir = tempfile.mkdtemp(prefix="stagedoor-ratelimit-bench-")
    try:
        tls_dir = os.path.join(workdir, "tls")
        subprocess.run([args.bin, "certs", "init", "--dir", tls_dir], check=True, capture_output=True, timeout=60)
        upstream, upstream_admin = fc.free_port(), fc.free_port()
        path = os.path.join(workdir, "upstream.yaml")
        with open(path, "w") as f:
            f.write(fc.UPSTREAM.format(port=upstream, admin=upstream_admin))
        processes.append(subprocess.Popen(["taskset", "-c", "1", "envoy", "-c", path, "--concurrency", "1", "--disable-hot-restart",
                                           "-l", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        redis_port = fc.free_port()
        processes.append(subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                           "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        plain_registry = dc.write_registry(workdir, "plain", upstream, identity=False)
        limited_registry = os.path.join(workdir, "registry-limited.yaml")
        with open(plain_registry) as f, open(limited_registry, "w") as g:
            g.write(LIMITS.format(timeout_ms=args.timeout_ms) + f.read())
        token = subprocess.run([args.bin, "token", "--registry", plain_registry, "--role", "venue-manager", "--venues", "v1,v2",
                                "--ttl", "1h"], check=True, capture_output=True, text=True).stdout.strip()
        rls_port = fc.free_port()
        gateways = {
            "without the limiter": serve(args.bin, workdir, "plain", plain_registry, tls_dir, processes, []),
            "with the global limiter": serve(args.bin, workdir, "limited", limited_registry, tls_dir, processes,
                                             ["--ratelimit", f"127.0.0.1:{rls_port}", "--ratelimit-redis", f"redis://127.0.0.1:{redis_port}"]),
        }
        for i, (name, ports) in enumerate(gateways.items()):
            start_envoy(workdir, f"bench-{i}", ports, tls_dir, processes)
            fc.wait_ok(ports["listen"], token, timeout=60)
        results = {name: [] for name in gateways}
        evalsha = inner = limited_requests = 0
        for _ in range(args.rounds):
            for name, ports in gateways.items():
                limited = name == "with the global limiter"
                if limited:
                    redis_cli(redis_port, "CONFIG", "RESETSTAT")
                r = wrk(ports["listen"], args.seconds, token, args.connections)
                results[name].append(r)
                if limited:
                    stats = commandstats(redis_port)
                    evalsha += stats.get("evalsha", 0)
                    inner += sum(v for k, v in stats.items() if k not in ("evalsha", "config", "info"))
                    limited_requests += r["requests"]
        report(args, results, evalsha, inner, limited_requests, gateways["with the global limiter"]["metrics"],
               throughput(args) if args.throughput else None)
    finally:
        for p in reversed(processes):
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)


def throughput(args):
    """The limiter alone; the test picks target/release/stagedoor when it exists, so say which."""
    out = subprocess.run(["cargo", "test", "-q", "-p", "stagedoor-e2e", "--test", "ratelimit_throughput", "--", "--ignored",
                          "--nocapture"], cwd=fc.ROOT, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "STAGEDOOR_BIN": args.bin})
    line = re.search(r"RESULT (.*)", out.stdout)
    if out.returncode != 0 or not line:
        raise SystemExit(f"the throughput client failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return line.group(1)


def report(args, results, evalsha, inner, limited_requests, metrics_port, limiter_alone=None):
    conn = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=5)
    conn.request("GET", "/metrics")
    metrics = conn.getresponse().read().decode()
    calls = re.search(r"stagedoor_ratelimit_store_seconds_count (\d+)", metrics)
    total = re.search(r"stagedoor_ratelimit_store_seconds_sum ([\d.e+-]+)", metrics)
    store_ms = float(total.group(1)) * 1000 / int(calls.group(1)) if calls and int(calls.group(1)) else float("nan")
    errors = re.search(r"stagedoor_ratelimit_store_errors_total (\d+)", metrics)
    median = {name: {k: statistics.median(r[k] for r in rounds) for k in ("rps", "p50", "p99")} for name, rounds in results.items()}
    base, lim = median["without the limiter"], median["with the global limiter"]
    lines = [
        "# Global rate limiting: what the limiter adds (bench/ratelimit_cost.py)",
        "",
        f"{args.rounds} rounds x {args.seconds} s, wrk -t1 -c{args.connections} on core 1, each Envoy --concurrency 1 on core 0;",
        f"control plane: `{os.path.relpath(args.bin, fc.ROOT)}`; Envoy's limiter timeout {args.timeout_ms} ms. Medians of the rounds.",
        "The limited gateway also runs the per-Envoy fallback filter (the limit's default mode, local_fallback).",
        "",
        "| gateway | requests/s | p50 µs | p99 µs |",
        "|---|---:|---:|---:|",
    ]
    for name, m in median.items():
        lines.append(f"| {name} | {m['rps']:.0f} | {m['p50']:.0f} | {m['p99']:.0f} |")
    lines += [
        "",
        f"Added by the limiter: p50 +{lim['p50'] - base['p50']:.0f} µs, p99 +{lim['p99'] - base['p99']:.0f} µs, "
        f"throughput {100 * (lim['rps'] / base['rps'] - 1):+.0f} %.",
        f"Redis: {evalsha / max(limited_requests, 1):.3f} EVALSHA per request, "
        f"{inner / max(limited_requests, 1):.2f} commands inside the script per request (TIME, GET, SET); "
        f"store call {store_ms:.3f} ms on average as the service measured it; store errors {errors.group(1) if errors else '?'}.",
        "",
        "Rounds (requests/s): " + "; ".join(f"{n}: " + ", ".join(f"{r['rps']:.0f}" for r in rs) for n, rs in results.items()),
    ]
    if limiter_alone:
        lines += ["", f"The RateLimitService alone (tests/tests/ratelimit_throughput.rs, no Envoy): {limiter_alone}."]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
