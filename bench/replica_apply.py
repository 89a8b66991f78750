#!/usr/bin/env python3
"""Time from `stagedoor apply` to every Envoy holding the new routes, with 1 and 2
control-plane replicas on one Redis (issue 17).

Both runs have two Envoys: on the one replica, or one on each of the two (each Envoy's
bootstrap lists every replica). Each apply adds a new service with its own prefix through
the first replica; the time runs from the CLI's start until both Envoys' admin
/config_dump shows the prefix (polled every 2 ms). The CLI's own run (process start, mutual
TLS, the diff) is reported apart. The 2-replica figure is given as a ratio to the 1-replica
baseline measured in the same run.

Usage: bench/replica_apply.py [--applies 20] [--out bench/results-replicas.md]
       (STAGEDOOR_BIN, STAGEDOOR_WASM: default target/release/...)
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("STAGEDOOR_BIN", os.path.join(ROOT, "target/release/stagedoor"))
WASM = os.environ.get("STAGEDOOR_WASM", os.path.join(ROOT, "target/wasm32-wasip1/release/stagedoor_filter.wasm"))

BASE = """auth:
  issuer: tickettoken
  audience: tickettoken-platform
  keys:
    - algorithms: [HS256]
      secret: bench-secret-bench-secret-bench-secret-0
      dev: true
services:
  - name: venue
    routes: [{ prefix: /api/v1/venues }]
    instances: [{ address: 127.0.0.1, port: 9 }]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port}")


def routes(admin):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/config_dump?resource=dynamic_route_configs", timeout=2) as r:
            return r.read().decode()
    except OSError:
        return ""


def run(replicas, applies, work):
    procs = []
    try:
        tls = os.path.join(work, "tls")
        subprocess.run([BIN, "certs", "init", "--dir", tls], check=True, capture_output=True)
        redis_port, gw = free_port(), free_port()
        procs.append(subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(redis_port)
        xds_ports = [free_port() for _ in range(replicas)]
        for i, xds in enumerate(xds_ports):
            registry = os.path.join(work, f"registry-{i}.yaml")
            open(registry, "w").write(BASE)
            http_port, metrics = free_port(), free_port()
            procs.append(subprocess.Popen([BIN, "serve", "--registry", registry, "--xds", f"127.0.0.1:{xds}", "--http", f"127.0.0.1:{http_port}",
                                           "--metrics", f"127.0.0.1:{metrics}", "--tls-dir", tls, "--listen", f"127.0.0.1:{gw}",
                                           "--wasm", WASM, "--redis", f"redis://127.0.0.1:{redis_port}"],
                                          stderr=open(os.path.join(work, f"cp-{i}.log"), "w")))
            wait_port(xds)
        template = open(os.path.join(ROOT, "envoy/bootstrap.yaml")).read()
        admins = []
        for e in range(2):
            node = f"bench-{e}"
            subprocess.run([BIN, "certs", "envoy", "--dir", tls, "--node-id", node], check=True, capture_output=True)
            # Envoy e lists replica e % replicas first: one Envoy on each replica when there are two.
            order = xds_ports[e % replicas:] + xds_ports[:e % replicas]
            endpoints = ", ".join("{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %d } } } }" % p for p in order)
            admin = free_port()
            text = template
            for k, v in {"NODE_ID": node, "ADMIN_PORT": admin, "XDS_ENDPOINTS": f"[{endpoints}]", "XDS_API_TYPE": "GRPC", "TLS_DIR": tls}.items():
                text = text.replace("${" + k + "}", str(v))
            path = os.path.join(work, f"bootstrap-{node}.yaml")
            open(path, "w").write(text)
            procs.append(subprocess.Popen(["envoy", "-c", path, "--concurrency", "1", "--disable-hot-restart", "-l", "warning", "--drain-time-s", "1"],
                                          stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, f"envoy-{node}.log"), "w")))
            admins.append(admin)
        deadline = time.time() + 30
        while not all("/api/v1/venues" in routes(a) for a in admins):
            if time.time() > deadline:
                raise SystemExit(f"Envoys never got their routes; logs in {work}")
            time.sleep(0.1)
        env = dict(os.environ, STAGEDOOR_SERVER=f"https://127.0.0.1:{xds_ports[0]}", STAGEDOOR_TLS_DIR=tls)
        total, cli = [], []
        services = ""
        for i in range(applies):
            services += f"  - name: bench-{i}\n    routes: [{{ prefix: /api/v1/bench-{i} }}]\n    instances: [{{ address: 127.0.0.1, port: 9 }}]\n"
            proposed = os.path.join(work, "proposed.yaml")
            open(proposed, "w").write(BASE + services)
            start = time.perf_counter()
            subprocess.run([BIN, "apply", "-f", proposed], check=True, capture_output=True, env=env)
            cli.append((time.perf_counter() - start) * 1000)
            prefix = f"/api/v1/bench-{i}\""
            deadline = start + 10
            while not all(prefix in routes(a) for a in admins):
                if time.perf_counter() > deadline:
                    raise SystemExit(f"apply {i} never reached every Envoy; logs in {work}")
                time.sleep(0.002)
            total.append((time.perf_counter() - start) * 1000)
        return total, cli
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--applies", type=int, default=20)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results-replicas.md"))
    args = ap.parse_args()
    lines = [f"apply -> both Envoys hold the new routes, {args.applies} applies per run, {time.strftime('%Y-%m-%d')} on "
             f"{os.uname().nodename}, binary {os.path.relpath(BIN, ROOT)}:", ""]
    medians = {}
    for replicas in (1, 2):
        work = tempfile.mkdtemp(prefix=f"stagedoor-bench-replicas{replicas}-")
        total, cli = run(replicas, args.applies, work)
        shutil.rmtree(work, ignore_errors=True)
        after = [t - c for t, c in zip(total, cli)]
        medians[replicas] = statistics.median(total)
        lines.append(f"- {replicas} replica(s): apply start -> every Envoy: median {statistics.median(total):.1f} ms, max {max(total):.1f} ms; "
                     f"of which the CLI run median {statistics.median(cli):.1f} ms; after the CLI returned: median "
                     f"{statistics.median(after):.1f} ms, max {max(after):.1f} ms")
    lines.append(f"- ratio 2 replicas / 1 replica (medians, apply start -> every Envoy): {medians[2] / medians[1]:.2f}")
    text = "\n".join(lines) + "\n"
    print(text)
    open(args.out, "w").write(text)


if __name__ == "__main__":
    main()
