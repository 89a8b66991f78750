#!/usr/bin/env python3
"""What the shipped composites and cached routes cost a request to a route that has neither:
Envoy's instructions per request for GET /api/v1/venues/v1 (200), through `stagedoor serve`
feeding an Envoy 1.40 over ADS, with the shipped registry's services and rules, once with and
once without its `composites` and `response_cache` blocks, in one run.

Why: a policy with composites or cached routes makes every forwarded request search them (the
filter's composite and cached-path lookups), and the Envoy routes of a service with a cached
path read the filter state that says X-Cache: BYPASS on every answer. /api/v1/venues/v1 is on
such a service (the `venues` cached route is /api/v1/venues), so this is the worst case for an
ordinary route; a service without cached paths pays only the filter's lookups.

Method: bench/deployed_cost.py's (callgrind, counting off at start; 300 warm-up requests, then
--requests counted on one keep-alive connection, dumped; then a 10 s idle window whose rate is
subtracted). The shipped registry's instances all point at one upstream Envoy answering 200
itself; its edge_tls and rate_limit blocks are dropped (a certificate, and a limit of 100 a
minute a replay would hit). Both Envoys are counted at once (two cores).

    python3 bench/edge_matching_cost.py --requests 500
"""

import argparse
import concurrent.futures
import os
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deployed_cost as dc  # noqa: E402
import filter_cost as fc  # noqa: E402

SHIPPED = os.path.join(fc.ROOT, "registry/tickettoken.yaml")


def write_registry(workdir, name, upstream_port, edge):
    with open(SHIPPED) as f:
        registry = yaml.safe_load(f)
    registry.pop("edge_tls", None)
    registry.pop("rate_limit", None)
    if not edge:
        registry.pop("composites", None)
        registry.pop("response_cache", None)
    for service in registry["services"]:
        service["instances"] = [{"address": "127.0.0.1", "port": upstream_port}]
    path = os.path.join(workdir, f"registry-{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(registry, f, sort_keys=False)
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--out", default=os.path.join(fc.ROOT, "bench/results-edge-matching.md"))
    args = ap.parse_args()
    processes = []
    with tempfile.TemporaryDirectory(prefix="stagedoor-edge-matching-") as workdir:
        try:
            upstream_port = fc.free_port()
            processes.append(fc.start_envoy(fc.UPSTREAM.format(admin=fc.free_port(), port=upstream_port), 1, workdir, "upstream"))
            tls_dir = os.path.join(workdir, "tls")
            dc.stagedoor("certs", "init", "--dir", tls_dir)
            registries = {name: write_registry(workdir, name, upstream_port, edge) for name, edge in (("with", True), ("without", False))}
            for path in registries.values():
                dc.stagedoor("validate", path)
            token = dc.stagedoor("token", "--registry", registries["with"], "--role", "venue-manager", "--venues", "v1,v2", "--ttl", "4h")
            ok = [dc.Workload("200", dc.PATH_OK, lambda i: token, 200)]
            planes = {name: dc.ControlPlane(workdir, name, path, tls_dir, processes) for name, path in registries.items()}

            def run(name):
                cp = planes[name]
                node = f"bench-{name}"
                boot = dc.ads_bootstrap(workdir, node, fc.free_port(), cp, tls_dir)
                return dc.callgrind(node, boot, workdir, cp.listen, ok, args.requests)[:2]

            with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
                futures = {name: pool.submit(run, name) for name in planes}
                counts = {name: f.result() for name, f in futures.items()}
        finally:
            for p in reversed(processes):
                p.terminate()
                p.wait(timeout=30)
    (with_all, with_less), (without_all, without_less) = counts["with"], counts["without"]
    lines = [
        "# An ordinary route's cost of the shipped composites and cached routes (bench/edge_matching_cost.py)",
        "",
        f"GET {dc.PATH_OK} (200, HS256 token) through `stagedoor serve` over ADS, Envoy 1.40 --concurrency 1, "
        f"the shipped registry's services and rules; {args.requests} requests counted per Envoy, both in one run.",
        "",
        "| registry | instructions/req, all counted | less idle |",
        "|---|---:|---:|",
        f"| without composites and response_cache | {without_all['200']:,.0f} | {without_less['200']:,.0f} |",
        f"| with the shipped composites (2) and response_cache (4) | {with_all['200']:,.0f} | {with_less['200']:,.0f} |",
        "",
        f"Difference: {with_all['200'] - without_all['200']:+,.0f} all counted, {with_less['200'] - without_less['200']:+,.0f} less idle "
        f"({(with_less['200'] / without_less['200'] - 1) * 100:+.2f} %).",
    ]
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
