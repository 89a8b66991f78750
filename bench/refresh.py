#!/usr/bin/env python3
"""What a refresh costs at the gateway (issue 12), in one run: POST /api/v1/auth/refresh
through Envoy to `stagedoor serve --token-endpoint` (mutual TLS), which verifies the refresh
token, runs the rotation script in a real redis-server (one EVALSHA) and signs the new pair;
against a baseline in the same run on the same gateway: GET /api/v1/venues/v1 with an access
token (the filter's check, then an upstream Envoy answering 200).

Workload: wrk with one connection per thread (--clients threads), each thread its own
refresh-token family, every request presenting the refresh token the previous answer gave
(a chain of real rotations, never a grace replay); the baseline with the same threads and
connections. Rounds alternate the two; the table gives the median round. A refresh that is
not 200 stops the run (the chain would be broken). Redis commands per refresh come from INFO
commandstats over the refresh rounds.

The control plane is --bin (the debug build by default; --release for target/release/stagedoor).
Bounded: --rounds x --seconds under wrk, every wait has a deadline. Kills only what it started.

Usage: bench/refresh.py [--rounds 3] [--seconds 5] [--clients 4] [--bin PATH | --release] [--out bench/results-refresh.md]
"""

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import filter_cost as fc  # noqa: E402  (ports, the upstream Envoy, latency parsing)
import deployed_cost as dc  # noqa: E402  (the bench registry)
import ratelimit_cost as rc  # noqa: E402  (serve, start_envoy, redis_cli, commandstats)

REFRESH_SECRET = "bench-refresh-secret-bench-refresh-secret-0123"

TOKEN_ENDPOINT = """token_endpoint:
  instance: {{ address: 127.0.0.1, port: {port} }}
  refresh_key: {{ kid: refresh-bench, secret: {secret} }}
"""

# One family per wrk thread (one connection each): every answer's refresh token is the next
# request's. `done` prints the threads' failure counts for the script to check.
CHAIN_LUA = r"""
local threads, counter = {}, 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end
function init(args)
  local i = 0
  for line in io.lines(args[1]) do
    i = i + 1
    if i == id then token = line end
  end
  failures = 0
end
function request()
  return wrk.format("POST", "/api/v1/auth/refresh", { ["Content-Type"] = "application/json" },
                    '{"refreshToken":"' .. token .. '"}')
end
function response(status, headers, body)
  local next = status == 200 and body:match('"refreshToken":"([^"]+)"')
  if next then token = next else failures = failures + 1 end
end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do print("FAILURES " .. tostring(t:get("failures"))) end
end
"""


def wrk(args, port, extra, path, seconds, script_args=()):
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", f"-t{args.clients}", f"-c{args.clients}", f"-d{seconds}s", "--latency", *extra,
         f"http://127.0.0.1:{port}{path}", *(["--", *script_args] if script_args else [])], capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    failures = sum(int(n) for n in re.findall(r"FAILURES (\d+)", out))
    if non2xx or failures:
        raise SystemExit(f"{path}: {non2xx.group(1) if non2xx else failures} answers were not 200:\n{out}")
    return {"requests": requests, "rps": requests / seconds, "p50": fc.parse_latency(out, "50%"), "p99": fc.parse_latency(out, "99%")}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4, help="wrk threads, one connection and one family each")
    parser.add_argument("--bin", default=fc.BIN)
    parser.add_argument("--release", action="store_true", help="--bin target/release/stagedoor")
    parser.add_argument("--out", default=os.path.join(fc.ROOT, "bench/results-refresh.md"))
    args = parser.parse_args()
    if args.release:
        args.bin = os.path.join(fc.ROOT, "target/release/stagedoor")
        if not os.path.exists(args.bin):
            raise SystemExit(f"{args.bin} is missing: cargo build --release -p stagedoor-control-plane")
    processes = []
    workdir = tempfile.mkdtemp(prefix="stagedoor-refresh-bench-")
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
        endpoint_port = fc.free_port()
        base_registry = dc.write_registry(workdir, "plain", upstream, identity=False)
        registry = os.path.join(workdir, "registry-refresh.yaml")
        with open(base_registry) as f, open(registry, "w") as g:
            g.write(TOKEN_ENDPOINT.format(port=endpoint_port, secret=REFRESH_SECRET) + f.read())
        access = subprocess.run([args.bin, "token", "--registry", registry, "--role", "venue-manager", "--venues", "v1,v2",
                                 "--ttl", "1h"], check=True, capture_output=True, text=True).stdout.strip()
        ports = rc.serve(args.bin, workdir, "refresh", registry, tls_dir, processes,
                         ["--redis", f"redis://127.0.0.1:{redis_port}", "--token-endpoint", f"127.0.0.1:{endpoint_port}"])
        rc.start_envoy(workdir, "bench-refresh", ports, tls_dir, processes)
        fc.wait_ok(ports["listen"], access, timeout=60)
        lua = os.path.join(workdir, "chain.lua")
        with open(lua, "w") as f:
            f.write(CHAIN_LUA)
        results = {"baseline: GET with an access token": [], "POST /api/v1/auth/refresh": []}
        evalsha = inner = refreshes = 0
        for _ in range(args.rounds):
            r = wrk(args, ports["listen"], ["-H", f"Authorization: Bearer {access}"], dc.PATH_OK, args.seconds)
            results["baseline: GET with an access token"].append(r)
            tokens = os.path.join(workdir, "tokens.txt")
            with open(tokens, "w") as f:
                for _ in range(args.clients):
                    f.write(subprocess.run([args.bin, "token", "--refresh", "--registry", registry], check=True, capture_output=True,
                                           text=True, timeout=60).stdout.strip() + "\n")
            rc.redis_cli(redis_port, "CONFIG", "RESETSTAT")
            r = wrk(args, ports["listen"], ["-s", lua], "/api/v1/auth/refresh", args.seconds, [tokens])
            results["POST /api/v1/auth/refresh"].append(r)
            stats = rc.commandstats(redis_port)
            evalsha += stats.get("evalsha", 0)
            inner += sum(v for k, v in stats.items() if k not in ("evalsha", "config", "info", "script", "publish"))
            refreshes += r["requests"]
        report(args, results, evalsha, inner, refreshes)
    finally:
        for p in reversed(processes):
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)


def report(args, results, evalsha, inner, refreshes):
    median = {name: {k: statistics.median(r[k] for r in rounds) for k in ("rps", "p50", "p99")} for name, rounds in results.items()}
    base, refresh = median["baseline: GET with an access token"], median["POST /api/v1/auth/refresh"]
    lines = [
        "# Refresh at the gateway (bench/refresh.py)",
        "",
        f"{args.rounds} rounds x {args.seconds} s, wrk -t{args.clients} -c{args.clients} on core 1 (one refresh-token family per",
        f"connection, each request rotating the previous answer's token), Envoy --concurrency 1; control plane",
        f"`{os.path.relpath(args.bin, fc.ROOT)}` with --redis and --token-endpoint, both unpinned. Medians of the rounds.",
        "",
        "| workload | requests/s | p50 µs | p99 µs |",
        "|---|---:|---:|---:|",
    ]
    for name, m in median.items():
        lines.append(f"| {name} | {m['rps']:.0f} | {m['p50']:.0f} | {m['p99']:.0f} |")
    lines += [
        "",
        f"Refresh against the baseline: throughput x{refresh['rps'] / base['rps']:.2f}, p50 x{refresh['p50'] / base['p50']:.1f}, "
        f"p99 x{refresh['p99'] / base['p99']:.1f}.",
        f"Redis: {evalsha / max(refreshes, 1):.3f} EVALSHA per refresh, {inner / max(refreshes, 1):.2f} commands inside the script "
        "per refresh (EXISTS, HGET, HSET, EXPIRE).",
        "",
        "Rounds (requests/s): " + "; ".join(f"{n}: " + ", ".join(f"{r['rps']:.0f}" for r in rs) for n, rs in results.items()),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
