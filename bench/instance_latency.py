#!/usr/bin/env python3
"""Time from a change in Redis to Envoy routing to it, over many changes.

Starts a private redis-server, the control plane (--redis), one Envoy and two echo
upstreams on free loopback ports. Each change moves the service's only live instance from
one echo to the other: the new instance key is SET (with the pub/sub announcement
`stagedoor register` makes) and the old one DELeted, in one round trip; then requests go to
the gateway until the new echo answers. Reports p50/p90/p99/max over --changes changes.

With --services N the registry has N - 1 more services (5 static instances each, health
checks off, never requested): the change then goes through a control plane and an Envoy
holding N clusters.

With --delta the Envoy speaks delta xDS (DELTA_GRPC) instead of state of the world. The
control plane is STAGEDOOR_BIN (default target/release/stagedoor): the report names it, so
two runs with two binaries compare before and after.

Usage: bench/instance_latency.py [--changes 100] [--services 1] [--delta] [--out bench/results-instances.md]
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("STAGEDOOR_BIN", os.path.join(ROOT, "target/release/stagedoor"))
ECHO_BIN = os.environ.get("STAGEDOOR_ECHO_BIN", os.path.join(ROOT, "target/release/stagedoor-echo"))
WASM = os.path.join(ROOT, "target/wasm32-wasip1/release/stagedoor_filter.wasm")

REGISTRY = """auth:
  issuer: tickettoken
  audience: tickettoken-platform
  keys:
    - algorithms: [HS256]
      secret: bench-secret-bench-secret-bench-secret-0
services:
  - name: live
    routes: [{ prefix: /api/v1/live }]
    public_paths: ["/api/v1/live/*"]
    traffic:
      retries: { attempts: 1, base_interval_ms: 5, max_interval_ms: 10 }
      health_check: { enabled: false }
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resp(*args):
    out = f"*{len(args)}\r\n"
    for a in args:
        a = str(a)
        out += f"${len(a.encode())}\r\n{a}\r\n"
    return out.encode()


class Redis:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))

    def pipeline(self, *commands):
        self.sock.sendall(b"".join(resp(*c) for c in commands))
        # One reply line per command (all simple here: +OK, :n).
        buf = b""
        while buf.count(b"\r\n") < len(commands):
            buf += self.sock.recv(4096)


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port}")


def filler_services(count):
    """`count` services besides `live`, each with its own prefix and 5 unrequested instances."""
    lines = []
    for i in range(count):
        instances = ", ".join(f"{{ address: 10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}, port: {3000 + j} }}" for j in range(5))
        lines.append(f"  - name: fill{i}\n    routes: [{{ prefix: /fill/{i} }}]\n    instances: [{instances}]\n"
                     "    traffic: { health_check: { enabled: false } }\n")
    return "".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--services", type=int, default=1, help="services in the registry, `live` included")
    ap.add_argument("--delta", action="store_true", help="delta xDS (DELTA_GRPC) rather than SotW")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results-instances.md"))
    args = ap.parse_args()
    procs = []
    work = tempfile.mkdtemp(prefix="stagedoor-bench-")
    try:
        redis_port, xds, http_port, gw, admin = (free_port() for _ in range(5))
        ports = {"live-a": free_port(), "live-b": free_port()}
        procs.append(subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(redis_port)
        for name, port in ports.items():
            procs.append(subprocess.Popen([ECHO_BIN, "--port", str(port), "--service", name], stderr=subprocess.DEVNULL))
            wait_port(port)
        # Envoy and the control plane speak mutual TLS (as bench/push_ack.py sets it up).
        tls = os.path.join(work, ".stagedoor")
        subprocess.run([BIN, "certs", "init", "--dir", tls], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([BIN, "certs", "envoy", "--dir", tls, "--node-id", "bench"], check=True, stdout=subprocess.DEVNULL)
        registry = os.path.join(work, "registry.yaml")
        open(registry, "w").write(REGISTRY + filler_services(args.services - 1))
        procs.append(subprocess.Popen([BIN, "serve", "--registry", registry, "--xds", f"127.0.0.1:{xds}", "--http", f"127.0.0.1:{http_port}",
                                       "--listen", f"127.0.0.1:{gw}", "--wasm", WASM, "--redis", f"redis://127.0.0.1:{redis_port}", "--tls-dir", tls],
                                      stderr=open(os.path.join(work, "cp.log"), "w")))
        wait_port(http_port, 30 + args.services // 50)
        bootstrap = open(os.path.join(ROOT, "envoy/bootstrap.yaml")).read()
        for k, v in {"NODE_ID": "bench", "ADMIN_PORT": admin, "XDS_ENDPOINTS": ("[{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %s } } } }]" % (xds,)), "XDS_API_TYPE": "DELTA_GRPC" if args.delta else "GRPC", "TLS_DIR": tls}.items():
            bootstrap = bootstrap.replace("${" + k + "}", str(v))
        open(os.path.join(work, "bootstrap.yaml"), "w").write(bootstrap)
        procs.append(subprocess.Popen(["envoy", "-c", os.path.join(work, "bootstrap.yaml"), "--concurrency", "1", "--disable-hot-restart", "-l", "warning"],
                                      stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "envoy.log"), "w")))
        wait_port(gw, 30 + args.services // 100)
        redis = Redis(redis_port)
        conn = http.client.HTTPConnection("127.0.0.1", gw, timeout=5)

        def answered_by():
            try:
                conn.request("GET", "/api/v1/live/x")
                r = conn.getresponse()
                body = r.read()
                return json.loads(body).get("service") if r.status == 200 else None
            except Exception:
                conn.close()
                return None

        current = None
        samples = []
        for i in range(args.changes + 1):
            target = "live-b" if current == "live-a" else "live-a"
            commands = [("SET", f"stagedoor:instance:live:127.0.0.1:{ports[target]}", "{}", "EX", "300")]
            if current:
                commands.append(("DEL", f"stagedoor:instance:live:127.0.0.1:{ports[current]}"))
            commands.append(("PUBLISH", "stagedoor:instances", "live"))
            start = time.perf_counter()
            redis.pipeline(*commands)
            deadline = start + 10
            while answered_by() != target:
                if time.perf_counter() > deadline:
                    raise SystemExit(f"change {i} never reached Envoy; logs in {work}")
            elapsed = (time.perf_counter() - start) * 1000
            if i > 0:  # the first one includes cluster warm-up
                samples.append(elapsed)
            current = target
        samples.sort()
        pct = lambda p: samples[min(len(samples) - 1, int(len(samples) * p / 100))]
        text = (
            f"Redis change -> Envoy routing to the new instance, {args.services} services, "
            f"{'delta' if args.delta else 'SotW'} xDS, control plane {BIN}, {len(samples)} changes, "
            f"{time.strftime('%Y-%m-%d')} on {os.uname().nodename}: "
            f"p50 {pct(50):.1f} ms, p90 {pct(90):.1f} ms, p99 {pct(99):.1f} ms, max {samples[-1]:.1f} ms, "
            f"mean {statistics.mean(samples):.1f} ms.\n"
        )
        print(text)
        open(args.out, "w").write(text)
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
