#!/usr/bin/env python3
"""Composite routes and the response cache (issue 14), measured in one run through one
Envoy 1.40 (--concurrency 1, ADS over mutual TLS, the Stagedoor filter, one HS256 token):

  composite      GET of a composite route with three sources, each an echo told to wait
                 --delay-ms (all required), against
  slowest alone  the same echo wait proxied as a plain request: the composite should cost
                 about its slowest source, not the sum
  cache hit      GET of a cached route after its first miss, against
  proxied        GET of the same service on a route that is not cached, and
  upstream       the echo itself, straight (no Envoy): the round trip a hit saves

Every kind is sent in interleaved rounds on its own keep-alive connection, --requests per
kind (--composites for the slow ones). Bounded in count and by a 120 s deadline. Kills only
what it started. Figures are ratios of medians in the same run.

Usage: bench/edge_cost.py [--requests 2000] [--composites 40] [--delay-ms 100] [--out bench/results-edge.md]
"""

import argparse
import contextlib
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import filter_cost as fc  # noqa: E402  (ports, binaries)
import deployed_cost as dc  # noqa: E402  (the control plane, ADS bootstraps)

ECHO = os.path.join(fc.ROOT, "target/debug/stagedoor-echo")

REGISTRY = """auth:
  issuer: tickettoken
  audience: tickettoken-platform
  keys:
    - algorithms: [HS256]
      secret: bench-secret-bench-secret-bench-secret-0
      dev: true
services:
  - {{ name: venue, routes: [{{ prefix: /api/v1/venues }}], instances: [{{ address: 127.0.0.1, port: {venue} }}] }}
  - {{ name: event, routes: [{{ prefix: /api/v1/events }}], instances: [{{ address: 127.0.0.1, port: {event} }}] }}
  - {{ name: ticket, routes: [{{ prefix: /api/v1/tickets }}], instances: [{{ address: 127.0.0.1, port: {ticket} }}] }}
composites:
  - name: three
    path: /api/v1/aggregate/three
    deadline_ms: 5000
    sources:
      - {{ name: a, service: venue, path: "/api/v1/venues/a?x-echo-delay-ms={delay}", required: true }}
      - {{ name: b, service: event, path: "/api/v1/events/b?x-echo-delay-ms={delay}", required: true }}
      - {{ name: c, service: ticket, path: "/api/v1/tickets/c?x-echo-delay-ms={delay}", required: true }}
response_cache:
  - {{ name: venue, path: "/api/v1/venues/cached/{{id}}", ttl_secs: 3600 }}
"""


def wait_status(port, path, headers, status, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path, headers=headers)
            if conn.getresponse().status == status:
                return
        time.sleep(0.2)
    raise SystemExit(f"GET {path} never answered {status}")


class Kind:
    def __init__(self, name, port, path, headers, expect_cache=None):
        self.name, self.path, self.headers, self.expect_cache = name, path, headers, expect_cache
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.samples = []

    def once(self):
        start = time.perf_counter()
        self.conn.request("GET", self.path, headers=self.headers)
        response = self.conn.getresponse()
        response.read()
        elapsed = (time.perf_counter() - start) * 1000
        if response.status != 200:
            raise SystemExit(f"{self.name}: status {response.status}")
        if self.expect_cache and response.getheader("x-cache") != self.expect_cache:
            raise SystemExit(f"{self.name}: x-cache {response.getheader('x-cache')}")
        self.samples.append(elapsed)

    def p(self, q):
        s = sorted(self.samples)
        return s[min(len(s) - 1, int(len(s) * q / 100))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--composites", type=int, default=40)
    ap.add_argument("--delay-ms", type=int, default=100)
    ap.add_argument("--bin", default=fc.BIN)
    ap.add_argument("--out", default=os.path.join(fc.ROOT, "bench/results-edge.md"))
    args = ap.parse_args()
    processes = []
    deadline = time.time() + 120
    with tempfile.TemporaryDirectory(prefix="stagedoor-edge-") as workdir:
        try:
            ports = {name: fc.free_port() for name in ("venue", "event", "ticket")}
            for name, port in ports.items():
                processes.append(subprocess.Popen([ECHO, "--port", str(port), "--service", name], stderr=subprocess.DEVNULL))
            tls_dir = os.path.join(workdir, "tls")
            subprocess.run([args.bin, "certs", "init", "--dir", tls_dir], check=True, capture_output=True, timeout=60)
            registry = os.path.join(workdir, "registry.yaml")
            with open(registry, "w") as f:
                f.write(REGISTRY.format(delay=args.delay_ms, **ports))
            token = subprocess.run([args.bin, "token", "--registry", registry, "--role", "venue-manager", "--venues", "v1",
                                    "--ttl", "4h"], check=True, capture_output=True, text=True, timeout=60).stdout.strip()
            cp = dc.ControlPlane(workdir, "edge", registry, tls_dir, processes, args.bin)
            boot = dc.ads_bootstrap(workdir, "edge", fc.free_port(), cp, tls_dir)
            processes.append(subprocess.Popen(["envoy", "-c", boot, "--concurrency", "1", "--disable-hot-restart", "-l", "warning"],
                                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, "envoy.log"), "w")))
            auth = {"authorization": f"Bearer {token}"}
            wait_status(cp.listen, "/api/v1/venues/warm", auth, 200)
            slow = [Kind("composite", cp.listen, "/api/v1/aggregate/three", auth),
                    Kind("slowest alone", cp.listen, f"/api/v1/venues/slow?x-echo-delay-ms={args.delay_ms}", auth)]
            fast = [Kind("cache hit", cp.listen, "/api/v1/venues/cached/v1", auth, "HIT"),
                    Kind("proxied", cp.listen, "/api/v1/venues/plain/v1", auth),
                    Kind("upstream", ports["venue"], "/api/v1/venues/plain/v1", {})]
            Kind("first miss", cp.listen, "/api/v1/venues/cached/v1", auth, "MISS").once()
            for kind in slow + fast:
                kind.once()  # warm each connection
                kind.samples.clear()
            for _ in range(args.composites):
                for kind in slow:
                    kind.once()
                if time.time() > deadline:
                    raise SystemExit("over the 120 s deadline")
            for _ in range(args.requests):
                for kind in fast:
                    kind.once()
                if time.time() > deadline:
                    raise SystemExit("over the 120 s deadline")
        finally:
            for p in reversed(processes):
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=30)
    rows = slow + fast
    lines = [
        "# Composite routes and the response cache (bench/edge_cost.py)",
        "",
        f"{time.strftime('%Y-%m-%d')} on {os.uname().nodename}: Envoy 1.40 --concurrency 1, ADS over mutual TLS, control plane "
        f"`{os.path.relpath(args.bin, fc.ROOT)}`, the release filter; one keep-alive connection per kind, interleaved rounds.",
        "",
        "| kind | requests | p50 ms | p90 ms | p99 ms | mean ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for k in rows:
        lines.append(f"| {k.name} | {len(k.samples)} | {k.p(50):.3f} | {k.p(90):.3f} | {k.p(99):.3f} | {statistics.mean(k.samples):.3f} |")
    composite, alone, hit, proxied, upstream = rows
    lines += [
        "",
        f"Composite of three {args.delay_ms} ms sources / the slowest alone (p50): {composite.p(50) / alone.p(50):.3f} "
        f"(the sum would be 3.0); added {composite.p(50) - alone.p(50):+.3f} ms.",
        f"Cache hit / proxied request (p50): {hit.p(50) / proxied.p(50):.3f}; hit / upstream round trip alone: "
        f"{hit.p(50) / upstream.p(50):.3f}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
