#!/usr/bin/env python3
"""The response cache on a replay of the shipped registry's routes: hit ratio, upstream
requests with and without the cache, and latency of both, in one run.

Setup: registry/tickettoken.yaml (its services, rules, composites and cached routes) with
every service's instance an echo upstream (`stagedoor-echo`, one per service) and its
edge_tls and rate_limit dropped (a certificate, and a limit of 100 a minute the replay would
hit); served by two `stagedoor serve` + Envoy 1.40 (--concurrency 1, ADS over mutual TLS):
one with the registry as shipped, one without its `response_cache` block.

Replay: --requests GETs drawn (fixed seed) from a mix over the four cached routes (events and
venues lists by page, ticket availability by event, search by q and category: popular keys
drawn more often, Zipf-like) and two uncached ones (an event, a venue), by --tenants tenants of
--users users each (each a token of its own). Every request goes to both Envoys in turn, on
one keep-alive connection each, so both see the same sequence under the same load.

Upstream requests: the sum of Envoy's `cluster.svc_*.upstream_rq_total` over the replay (a
miss's fetch goes through the same clusters).

    python3 bench/cache_replay.py --requests 2000
"""

import argparse
import contextlib
import http.client
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deployed_cost as dc  # noqa: E402
import filter_cost as fc  # noqa: E402

SHIPPED = os.path.join(fc.ROOT, "registry/tickettoken.yaml")
ECHO = os.path.join(fc.ROOT, "target/debug/stagedoor-echo")
DEADLINE_S = 300


def zipf(rng, n):
    """1..n, 1 the most likely (weight 1/k)."""
    return rng.choices(range(1, n + 1), weights=[1 / k for k in range(1, n + 1)])[0]


def replay(rng, n, tenants, users):
    callers = [(f"tenant-{t}", f"user-{t}-{u}") for t in range(1, tenants + 1) for u in range(1, users + 1)]
    terms = ["rock", "jazz", "comedy", "theatre", "festival", "opera", "football", "tennis", "family", "kids"]
    mix = [
        (30, "events", lambda: f"/api/v1/events?page={zipf(rng, 5)}&limit=20"),
        (10, "venues", lambda: f"/api/v1/venues?page={zipf(rng, 3)}&limit=20"),
        (25, "ticket-availability", lambda: f"/api/v1/tickets/availability?eventId=e{zipf(rng, 20)}"),
        (15, "search", lambda: f"/api/v1/search?q={terms[zipf(rng, len(terms)) - 1]}&category=c{zipf(rng, 3)}&utm=x{rng.randrange(1000)}"),
        (12, "event (not cached)", lambda: f"/api/v1/events/e{zipf(rng, 20)}"),
        (8, "venue (not cached)", lambda: f"/api/v1/venues/v{zipf(rng, 10)}"),
    ]
    weights = [w for w, _, _ in mix]
    out = []
    for _ in range(n):
        _, kind, path = rng.choices(mix, weights=weights)[0]
        out.append((kind, path(), rng.choice(callers)))
    return out


def write_registry(workdir, name, echo_ports, cache):
    with open(SHIPPED) as f:
        registry = yaml.safe_load(f)
    registry.pop("edge_tls", None)
    registry.pop("rate_limit", None)
    if not cache:
        registry.pop("response_cache", None)
    for service in registry["services"]:
        service["instances"] = [{"address": "127.0.0.1", "port": echo_ports[service["name"]]}]
    path = os.path.join(workdir, f"registry-{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(registry, f, sort_keys=False)
    return path


def count_service_clusters(bootstrap):
    """The bootstrap's stats_matcher keeps no per-cluster stats; this bench's Envoys keep
    the service clusters' too (the only change to envoy/bootstrap.yaml)."""
    with open(bootstrap) as f:
        text = f.read()
    anchor = '        - prefix: "cluster.stagedoor_"\n'
    if anchor not in text:
        raise SystemExit("envoy/bootstrap.yaml's stats_matcher changed: update cache_replay.py")
    with open(bootstrap, "w") as f:
        f.write(text.replace(anchor, anchor + '        - prefix: "cluster.svc_"\n'))


def upstream_requests(admin):
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=10)
    conn.request("GET", "/stats?filter=^cluster\\.svc_.*\\.upstream_rq_total$")
    text = conn.getresponse().read().decode()
    conn.close()
    return sum(int(v) for v in re.findall(r": (\d+)$", text, re.M))


class Gateway:
    def __init__(self, name, port, admin):
        self.name, self.port, self.admin = name, port, admin
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.samples, self.cache = [], {}

    def get(self, path, token):
        start = time.perf_counter()
        self.conn.request("GET", path, headers={"authorization": f"Bearer {token}"})
        response = self.conn.getresponse()
        response.read()
        self.samples.append((time.perf_counter() - start) * 1000)
        return response

    def p(self, q):
        s = sorted(self.samples)
        return s[min(len(s) - 1, int(len(s) * q / 100))]


def wait_ok(gateway, path, token, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
            conn.request("GET", path, headers={"authorization": f"Bearer {token}"})
            if conn.getresponse().status == 200:
                return
        time.sleep(0.3)
    raise SystemExit(f"{gateway.name}: GET {path} never answered 200")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--tenants", type=int, default=3)
    ap.add_argument("--users", type=int, default=4)
    ap.add_argument("--role", default="venue-manager")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--out", default=os.path.join(fc.ROOT, "bench/results-cache-replay.md"))
    args = ap.parse_args()
    with open(SHIPPED) as f:
        services = [s["name"] for s in yaml.safe_load(f)["services"]]
    processes = []
    with tempfile.TemporaryDirectory(prefix="stagedoor-cache-replay-") as workdir:
        try:
            echo_ports = {name: fc.free_port() for name in services}
            for name, port in echo_ports.items():
                processes.append(subprocess.Popen([ECHO, "--port", str(port), "--service", name], stderr=subprocess.DEVNULL))
            tls_dir = os.path.join(workdir, "tls")
            dc.stagedoor("certs", "init", "--dir", tls_dir)
            registries = {"with cache": write_registry(workdir, "with", echo_ports, True),
                          "without cache": write_registry(workdir, "without", echo_ports, False)}
            gateways = []
            for name, registry in registries.items():
                label = name.split()[0]
                cp = dc.ControlPlane(workdir, label, registry, tls_dir, processes)
                admin = fc.free_port()
                boot = dc.ads_bootstrap(workdir, f"replay-{label}", admin, cp, tls_dir)
                count_service_clusters(boot)
                processes.append(subprocess.Popen(["envoy", "-c", boot, "--concurrency", "1", "--disable-hot-restart", "-l", "warning"],
                                                  stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, f"envoy-{label}.log"), "w")))
                gateways.append(Gateway(name, cp.listen, admin))
            rng = random.Random(args.seed)
            sequence = replay(rng, args.requests, args.tenants, args.users)
            tokens = {}
            for _, _, (tenant, sub) in sequence:
                if (tenant, sub) not in tokens:
                    tokens[(tenant, sub)] = dc.stagedoor("token", "--registry", registries["with cache"], "--tenant", tenant,
                                                         "--sub", sub, "--role", args.role, "--venues", "v1,v2", "--ttl", "4h")
            any_token = next(iter(tokens.values()))
            for g in gateways:
                # A new VM holds requests until its first revocation list: let it arrive first.
                wait_ok(g, "/api/v1/events/warm", any_token)
            before = {g.name: upstream_requests(g.admin) for g in gateways}
            deadline = time.time() + DEADLINE_S
            kinds = {}
            for kind, path, caller in sequence:
                for g in gateways:
                    response = g.get(path, tokens[caller])
                    if response.status != 200:
                        raise SystemExit(f"{g.name}: GET {path} answered {response.status}")
                    x_cache = response.getheader("x-cache") or "-"
                    g.cache[x_cache] = g.cache.get(x_cache, 0) + 1
                    if g is gateways[0]:
                        kinds.setdefault(kind, {}).setdefault(x_cache, 0)
                        kinds[kind][x_cache] += 1
                if time.time() > deadline:
                    raise SystemExit(f"over the {DEADLINE_S} s deadline")
            upstream = {g.name: upstream_requests(g.admin) - before[g.name] for g in gateways}
        finally:
            for p in reversed(processes):
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=30)
    cached, plain = gateways
    hits = cached.cache.get("HIT", 0)
    on_cached = sum(v for k, v in cached.cache.items() if k != "-")
    lines = [
        "# The response cache on a replay of the shipped registry's routes (bench/cache_replay.py)",
        "",
        f"{time.strftime('%Y-%m-%d')} on {os.uname().nodename}: registry/tickettoken.yaml (echo upstreams; edge_tls and "
        f"rate_limit dropped), Envoy 1.40 --concurrency 1 over ADS; {args.requests} GETs (seed {args.seed}), "
        f"{args.tenants} tenants x {args.users} users, each sent to both gateways in turn.",
        "",
        "| gateway | requests | upstream requests | p50 ms | p90 ms | p99 ms | mean ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for g in gateways:
        lines.append(f"| {g.name} | {len(g.samples)} | {upstream[g.name]} | {g.p(50):.3f} | {g.p(90):.3f} | {g.p(99):.3f} | "
                     f"{statistics.mean(g.samples):.3f} |")
    lines += [
        "",
        "| route (with cache) | " + " | ".join(["HIT", "MISS", "BYPASS", "STALE", "no X-Cache"]) + " |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, counts in kinds.items():
        lines.append(f"| {kind} | " + " | ".join(str(counts.get(k, 0)) for k in ["HIT", "MISS", "BYPASS", "STALE", "-"]) + " |")
    saved = upstream["without cache"] - upstream["with cache"]
    lines += [
        "",
        f"Hit ratio: {hits / len(cached.samples):.3f} of all requests, {hits / max(on_cached, 1):.3f} of those on cached routes. "
        f"Upstream requests: {upstream['with cache']} with the cache against {upstream['without cache']} without "
        f"({saved} saved, {saved / max(upstream['without cache'], 1):.1%}). "
        f"p50 with / without: {cached.p(50) / plain.p(50):.3f}; p99: {cached.p(99) / plain.p(99):.3f}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
