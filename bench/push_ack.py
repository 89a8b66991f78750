#!/usr/bin/env python3
"""Push-to-ACK time per xDS type for 1, 10 and 50 Envoys, read from the control plane's
own convergence ledger (/status `envoys[].history[]`: each push's `answered_after_ms`).

For each fleet size: starts the control plane (mutual TLS, as deployed), the Envoys
(--concurrency 1, one certificate each) and an echo upstream on free loopback ports; waits
until every Envoy is SYNCED; then makes --edits registry edits, alternating an endpoint
edit (a static instance added or removed: EDS only) and a policy edit (a public path moved:
ECDS only), each waited for until every Envoy has been offered the new snapshot and ACKed
it. Reports p50/p99/max of push-to-ACK per type over every Envoy and edit, the time from
writing the registry file to the whole fleet converged (file watch and translation
included; /status polled, so this is as fine as one poll of the fleet's status), the time
to the first sync, and the Envoys' summed RSS.

Usage: bench/push_ack.py [--fleets 1,10,50] [--edits 10] [--out bench/results-push-ack.md]
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
ECHO_BIN = os.environ.get("STAGEDOOR_ECHO_BIN", os.path.join(ROOT, "target/debug/stagedoor-echo"))

REGISTRY = """auth:
  issuer: tickettoken
  audience: tickettoken-platform
  keys:
    - algorithms: [HS256]
      secret: bench-secret-bench-secret-bench-secret-0
services:
  - name: venue
    routes: [{{ prefix: /api/v1/venues }}]
    instances: [{instances}]
    public_paths: ["{public}"]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run(fleet, args):
    work = tempfile.mkdtemp(prefix=f"stagedoor-push-ack-{fleet}-")
    tls = os.path.join(work, ".stagedoor")
    echo, gateway, xds, http_port, metrics = (free_port() for _ in range(5))
    registry = os.path.join(work, "registry.yaml")

    def write_registry(extra_instance, public):
        instances = f"{{ address: 127.0.0.1, port: {echo} }}"
        if extra_instance:
            instances += ", { address: 127.0.0.2, port: 9 }"
        tmp = registry + ".tmp"
        with open(tmp, "w") as f:
            f.write(REGISTRY.format(instances=instances, public=public))
        os.replace(tmp, registry)

    context = None  # made once the CA exists

    def status():
        nonlocal context
        if context is None:
            context = ssl.create_default_context(cafile=os.path.join(tls, "ca.pem"))
            context.check_hostname = False  # loopback; the CA is checked
            context.load_cert_chain(os.path.join(tls, "operator.pem"), os.path.join(tls, "operator-key.pem"))
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{http_port}/status", context=context, timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            return {}

    def converged():
        s = status()
        envoys = s.get("envoys", [])
        return len(envoys) == fleet and all(
            e.get("snapshot_version") == s.get("snapshot_version") and e.get("state") == "SYNCED" for e in envoys
        )

    def wait_converged(limit):
        started = time.time()
        while time.time() - started < limit:
            if converged():
                return time.time() - started
            time.sleep(0.02)
        raise SystemExit(f"{fleet} Envoys did not converge within {limit} s; logs in {work}")

    procs = []
    envoys = []
    ok = False
    try:
        subprocess.run([BIN, "certs", "init", "--dir", tls], check=True, stdout=subprocess.DEVNULL)
        write_registry(False, "/api/v1/venues/open-start")
        log = lambda n: open(os.path.join(work, n), "w")
        procs.append(subprocess.Popen([ECHO_BIN, "--port", str(echo), "--service", "venue"],
                                      stdout=subprocess.DEVNULL, stderr=log("echo.log")))
        procs.append(subprocess.Popen(
            [BIN, "serve", "--registry", registry, "--xds", f"127.0.0.1:{xds}", "--http", f"127.0.0.1:{http_port}",
             "--metrics", f"127.0.0.1:{metrics}", "--listen", f"127.0.0.1:{gateway}", "--wasm", WASM, "--tls-dir", tls],
            cwd=work, stdout=subprocess.DEVNULL, stderr=log("control-plane.log")))
        with open(os.path.join(ROOT, "envoy/bootstrap.yaml")) as f:
            template = f.read()
        for i in range(fleet):
            node = f"bench-{i}"
            subprocess.run([BIN, "certs", "envoy", "--dir", tls, "--node-id", node], check=True, stdout=subprocess.DEVNULL)
            bootstrap = (template.replace("${NODE_ID}", node).replace("${ADMIN_PORT}", str(free_port()))
                         .replace("${XDS_ENDPOINTS}", "[{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %d } } } }]" % xds)
                         .replace("${XDS_API_TYPE}", "GRPC").replace("${TLS_DIR}", tls))
            path = os.path.join(work, f"bootstrap-{node}.yaml")
            with open(path, "w") as f:
                f.write(bootstrap)
            envoy = subprocess.Popen(
                ["envoy", "-c", path, "--concurrency", "1", "--disable-hot-restart", "-l", "error", "--drain-time-s", "1"],
                stdout=subprocess.DEVNULL, stderr=log(f"envoy-{node}.log"))
            procs.append(envoy)
            envoys.append(envoy)
        first_sync = wait_converged(120)
        baseline_ms = int(time.time() * 1000)
        fleet_times = []
        extra_instance, public = False, "/api/v1/venues/open-start"
        for i in range(args.edits):
            if i % 2 == 0:
                extra_instance = not extra_instance  # EDS only
            else:
                public = f"/api/v1/venues/open-{i}"  # ECDS only
            before = status().get("snapshot_version")
            written = time.time()
            write_registry(extra_instance, public)
            deadline = written + 10
            while status().get("snapshot_version") == before and time.time() < deadline:
                time.sleep(0.01)
            wait_converged(60)
            fleet_times.append(time.time() - written)
        final = status()
        by_type = {}
        for e in final.get("envoys", []):
            for push in e.get("history", []):
                if push["sent_at_unix_ms"] >= baseline_ms and push["outcome"] == "ACKED":
                    by_type.setdefault(push["type"], []).append(push["answered_after_ms"])
        memory = sum(rss_mb(e.pid) for e in envoys)
        ok = True
        return {"first_sync_s": first_sync, "by_type": by_type, "fleet_s": fleet_times, "rss_mb": memory}
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if ok:
            shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleets", default="1,10,50")
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--out")
    args = parser.parse_args()
    lines = [
        "| Envoys | type | pushes ACKed | p50 ms | p99 ms | max ms | edit written to fleet converged, p50 / max s | first sync s | Envoys' RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for fleet in [int(f) for f in args.fleets.split(",")]:
        r = run(fleet, args)
        for t, values in sorted(r["by_type"].items()):
            lines.append(
                f"| {fleet} | {t} | {len(values)} | {percentile(values, 50)} | {percentile(values, 99)} | {max(values)} | "
                f"{percentile(r['fleet_s'], 50):.2f} / {max(r['fleet_s']):.2f} | {r['first_sync_s']:.1f} | {r['rss_mb']:.0f} |"
            )
        print("\n".join(lines), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# Push-to-ACK (bench/push_ack.py)\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
