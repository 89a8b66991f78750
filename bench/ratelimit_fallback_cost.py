#!/usr/bin/env python3
"""What the per-Envoy local fallback costs when it is the limit: instructions per request
(callgrind, deployed_cost.py's harness) through Envoy 1.40 --concurrency 1 over ADS with
mutual TLS, the Stagedoor filter, one HS256 token, GET /api/v1/venues/v1 answered 200, in
three configurations pushed by the same control plane build in one run:

  no global limits                    the gateway as without issue 13
  limiter unreachable, fail open      a global limit with fail_mode: open, no --ratelimit
  limiter unreachable, local fallback the same limit with the default mode (local_fallback)

No --ratelimit: the stagedoor_ratelimit cluster has no endpoint, so every call fails at once
and the fail-open filter lets the request on; the difference between the last two rows is the
local_ratelimit filter counting the request in its per-user bucket. The limit is so high
that nothing is refused.

Bounded: --requests per Envoy, deployed_cost.py's deadlines. Kills only what it started.

Usage: bench/ratelimit_fallback_cost.py [--requests 2000] [--bin PATH] [--out bench/results-ratelimit-fallback.md]
"""

import argparse
import concurrent.futures
import contextlib
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import filter_cost as fc  # noqa: E402  (ports, the upstream Envoy)
import deployed_cost as dc  # noqa: E402  (the bench registry, the callgrind harness, ADS bootstraps)

LIMITS = """global_rate_limit:
  salt: bench-salt
  limits:
    - {{ name: api, requests: 100000000, period_ms: 60000, routes: [/api/v1/venues]{mode} }}
"""

CONFIGS = [
    ("no global limits", None),
    ("limiter unreachable, fail open", ", fail_mode: open"),
    ("limiter unreachable, local fallback", ""),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--bin", default=fc.BIN)
    ap.add_argument("--out", default=os.path.join(fc.ROOT, "bench/results-ratelimit-fallback.md"))
    args = ap.parse_args()
    processes = []
    with tempfile.TemporaryDirectory(prefix="stagedoor-rl-fallback-") as workdir:
        try:
            upstream = fc.free_port()
            processes.append(fc.start_envoy(fc.UPSTREAM.format(admin=fc.free_port(), port=upstream), 1, workdir, "upstream"))
            tls_dir = os.path.join(workdir, "tls")
            subprocess.run([args.bin, "certs", "init", "--dir", tls_dir], check=True, capture_output=True, timeout=60)
            plain = dc.write_registry(workdir, "plain", upstream, identity=False)
            token = subprocess.run([args.bin, "token", "--registry", plain, "--role", "venue-manager", "--venues", "v1,v2",
                                    "--ttl", "4h"], check=True, capture_output=True, text=True, timeout=60).stdout.strip()
            ok = [dc.Workload("200", dc.PATH_OK, lambda i: token, 200)]
            jobs = {}
            for i, (name, mode) in enumerate(CONFIGS):
                registry = plain
                if mode is not None:
                    registry = os.path.join(workdir, f"registry-{i}.yaml")
                    with open(plain) as f, open(registry, "w") as g:
                        g.write(LIMITS.format(mode=mode) + f.read())
                cp = dc.ControlPlane(workdir, f"cp{i}", registry, tls_dir, processes, args.bin)
                jobs[name] = (f"rlfb-{i}", cp)
            boots = {name: dc.ads_bootstrap(workdir, label, fc.free_port(), cp, tls_dir) for name, (label, cp) in jobs.items()}
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
                futures = {name: pool.submit(dc.callgrind, label, boots[name], workdir, cp.listen, ok, args.requests)
                           for name, (label, cp) in jobs.items()}
                counts = {name: future.result()[:2] for name, future in futures.items()}
        finally:
            for p in reversed(processes):
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=30)
    base = counts["no global limits"]
    lines = [
        "# The local fallback's cost (bench/ratelimit_fallback_cost.py)",
        "",
        f"Envoy 1.40 under callgrind, --concurrency 1, ADS over mutual TLS; {args.requests} requests (200) on one connection;",
        f"control plane `{os.path.relpath(args.bin, fc.ROOT)}`. Instructions per request, all counted / less the idle rate.",
        "",
        "| configuration | instructions/req | less idle | added to no global limits (less idle) |",
        "|---|---:|---:|---:|",
    ]
    for name, (raw, path) in counts.items():
        lines.append(f"| {name} | {raw['200']:,.0f} | {path['200']:,.0f} | {path['200'] - base[1]['200']:+,.0f} |")
    fallback = counts["limiter unreachable, local fallback"][1]["200"] - counts["limiter unreachable, fail open"][1]["200"]
    lines += ["", f"The local_ratelimit fallback itself (local fallback less fail open): {fallback:+,.0f} instructions/request."]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
