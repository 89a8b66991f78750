#!/usr/bin/env python3
"""What Envoy 1.40 itself costs at registry sizes: RSS per cluster and per route, and the
time from Envoy's start to its first ACK of the whole config, with --concurrency 1.

For each case (services x routes per service) it writes a registry, starts the control
plane (`stagedoor serve`, mutual TLS as deployed, SotW ADS) and one Envoy on free loopback
ports, and waits until the control plane's /status says the Envoy is SYNCED on the current
snapshot (every type ACKed). Each service is one cluster with one static instance (health
checks off) and `routes` prefixes. Reports the Envoy's RSS once synced (and the control
plane's), the seconds from Envoy's start to SYNCED, and, against the smallest case of the
same run, the RSS added per cluster and per route.

Bounded: each case stops at --timeout seconds, or when Envoy's RSS passes --max-rss-mb
(reported as such: that is where Envoy got too expensive, not a failure of the bench).

Usage: bench/envoy_scale.py [--cases 1x1,1000x1,5000x1,10000x1,1000x10] [--timeout 300]
                            [--max-rss-mb 6000] [--out bench/results-envoy-scale.md]
"""

import argparse
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WASM = os.path.join(ROOT, "target/wasm32-wasip1/release/stagedoor_filter.wasm")
BIN = os.environ.get("STAGEDOOR_BIN", os.path.join(ROOT, "target/debug/stagedoor"))

AUTH = """auth:
  issuer: tickettoken
  audience: tickettoken-platform
  keys:
    - algorithms: [HS256]
      secret: bench-secret-bench-secret-bench-secret-0
services:
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def registry_text(services, routes):
    lines = [AUTH]
    for i in range(services):
        prefixes = ", ".join(f"{{ prefix: /s{i}/r{r} }}" for r in range(routes))
        address = f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
        lines.append(f"  - name: s{i}\n    routes: [{prefixes}]\n    instances: [{{ address: {address}, port: 8080 }}]\n"
                     "    traffic: { health_check: { enabled: false } }\n")
    return "".join(lines)


def run(services, routes, args):
    work = tempfile.mkdtemp(prefix=f"stagedoor-envoy-scale-{services}x{routes}-")
    tls = os.path.join(work, ".stagedoor")
    gateway, xds, http_port, metrics, admin = (free_port() for _ in range(5))
    registry = os.path.join(work, "registry.yaml")
    with open(registry, "w") as f:
        f.write(registry_text(services, routes))
    context = None

    def status():
        nonlocal context
        if context is None:
            context = ssl.create_default_context(cafile=os.path.join(tls, "ca.pem"))
            context.check_hostname = False  # loopback; the CA is checked
            context.load_cert_chain(os.path.join(tls, "operator.pem"), os.path.join(tls, "operator-key.pem"))
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{http_port}/status", context=context, timeout=10) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return {}

    procs = []
    ok = False
    try:
        subprocess.run([BIN, "certs", "init", "--dir", tls], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([BIN, "certs", "envoy", "--dir", tls, "--node-id", "scale"], check=True, stdout=subprocess.DEVNULL)
        log = lambda n: open(os.path.join(work, n), "w")
        cp = subprocess.Popen(
            [BIN, "serve", "--registry", registry, "--xds", f"127.0.0.1:{xds}", "--http", f"127.0.0.1:{http_port}",
             "--metrics", f"127.0.0.1:{metrics}", "--listen", f"127.0.0.1:{gateway}", "--wasm", WASM, "--tls-dir", tls,
             "--max-services", str(max(services, 1)), "--max-routes-per-service", str(max(routes, 1))],
            cwd=work, stdout=subprocess.DEVNULL, stderr=log("control-plane.log"))
        procs.append(cp)
        deadline = time.time() + args.timeout
        while not status().get("snapshot_version"):
            if time.time() > deadline or cp.poll() is not None:
                raise SystemExit(f"control plane not serving; logs in {work}")
            time.sleep(0.2)
        with open(os.path.join(ROOT, "envoy/bootstrap.yaml")) as f:
            bootstrap = (f.read().replace("${NODE_ID}", "scale").replace("${ADMIN_PORT}", str(admin))
                         .replace("${XDS_ENDPOINTS}", "[{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %d } } } }]" % xds)
                         .replace("${XDS_API_TYPE}", "GRPC").replace("${TLS_DIR}", tls))
        path = os.path.join(work, "bootstrap.yaml")
        with open(path, "w") as f:
            f.write(bootstrap)
        started = time.time()
        envoy = subprocess.Popen(["envoy", "-c", path, "--concurrency", "1", "--disable-hot-restart", "-l", "error"],
                                 stdout=subprocess.DEVNULL, stderr=log("envoy.log"))
        procs.append(envoy)
        outcome, synced_s, peak = "timeout", None, 0.0
        while time.time() < started + args.timeout:
            peak = max(peak, rss_mb(envoy.pid))
            if peak > args.max_rss_mb:
                outcome = f"over {args.max_rss_mb} MiB"
                break
            if envoy.poll() is not None:
                outcome = f"envoy exited {envoy.returncode}"
                break
            s = status()
            node = next((e for e in s.get("envoys", []) if e.get("node_id", e.get("node")) == "scale"), None)
            if node and node.get("state") == "SYNCED" and node.get("snapshot_version") == s.get("snapshot_version"):
                outcome, synced_s = "synced", time.time() - started
                break
            time.sleep(0.2)
        time.sleep(1)  # settle: the last ACKed config applied everywhere
        result = {"services": services, "routes": routes, "outcome": outcome, "synced_s": synced_s,
                  "envoy_rss_mb": rss_mb(envoy.pid), "envoy_peak_mb": max(peak, rss_mb(envoy.pid)), "cp_rss_mb": rss_mb(cp.pid)}
        ok = True
        return result
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        if ok:
            shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="1x1,1000x1,5000x1,10000x1,1000x10", help="services x routes per service, comma-separated")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per case")
    ap.add_argument("--max-rss-mb", type=float, default=6000, help="stop a case when Envoy's RSS passes this")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results-envoy-scale.md"))
    args = ap.parse_args()
    cases = [tuple(int(x) for x in c.split("x")) for c in args.cases.split(",")]
    results = []
    for services, routes in cases:
        r = run(services, routes, args)
        print(json.dumps(r), flush=True)
        results.append(r)
    base = min(results, key=lambda r: r["services"] * r["routes"])
    one_route = {r["services"]: r for r in results if r["routes"] == 1}
    rows = []
    for r in results:
        per_cluster = per_route = ""
        if r["routes"] == 1 and r["services"] > base["services"]:
            per_cluster = f"{(r['envoy_rss_mb'] - base['envoy_rss_mb']) * 1024 / (r['services'] - base['services']):.1f}"
        same = one_route.get(r["services"])
        if r["routes"] > 1 and same:
            extra = r["services"] * (r["routes"] - 1)
            per_route = f"{(r['envoy_rss_mb'] - same['envoy_rss_mb']) * 1024 / extra:.2f}"
        synced = f"{r['synced_s']:.1f}" if r["synced_s"] is not None else "-"
        rows.append(f"| {r['services']:,} | {r['routes']} | {r['outcome']} | {synced} | {r['envoy_rss_mb']:.0f} | "
                    f"{r['envoy_peak_mb']:.0f} | {per_cluster} | {per_route} | {r['cp_rss_mb']:.0f} |")
    text = (f"Envoy 1.40 --concurrency 1, SotW ADS, {os.path.basename(BIN)} at {BIN}, "
            f"{time.strftime('%Y-%m-%d %H:%M')} on {os.uname().nodename}.\n\n"
            "| services | routes/service | outcome | start -> SYNCED s | Envoy RSS MiB | Envoy peak MiB | KiB per cluster | KiB per route | control plane RSS MiB |\n"
            "|---:|---:|---|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n")
    print(text)
    with open(args.out, "w") as f:
        f.write("# Envoy's own cost by registry size (bench/envoy_scale.py)\n\n" + text)


if __name__ == "__main__":
    main()
