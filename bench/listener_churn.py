#!/usr/bin/env python3
"""What many policy edits leave behind in Envoy: RSS, listening sockets, draining filter
chains and wasm VMs, before and after.

For each build given (default: this checkout's debug binary), starts the control plane,
one Envoy and an echo upstream on free loopback ports, then makes --edits registry edits
that change only the filter's policy (the one public path of a service moves). Each edit
is waited for until the gateway enforces it (the new path answers without a token), so
every edit reaches Envoy. Envoy runs with --drain-time-s (default 600, Envoy's own
default, which is what scripts/run.sh used before it set a bound) so that what drains is
visible.

Usage: bench/listener_churn.py [--edits 300] [--build NAME=PATH ...] [--concurrency 2]
                               [--drain-time-s 600] [--out bench/results-listener-churn.md]
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WASM = os.path.join(ROOT, "target/wasm32-wasip1/release/stagedoor_filter.wasm")
DEFAULT_BIN = os.environ.get("STAGEDOOR_BIN", os.path.join(ROOT, "target/debug/stagedoor"))
# The upstream is this checkout's for every build compared (older builds had it as `stagedoor echo`).
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
    instances: [{{ address: 127.0.0.1, port: {echo} }}]
    public_paths: ["{public}"]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, timeout=2.0):
    """(status, body) of a GET on loopback, or (0, '') if nothing answers."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read().decode(errors="replace")
        conn.close()
        return r.status, body
    except OSError:
        return 0, ""


def wait_until(check, limit):
    deadline = time.time() + limit
    while time.time() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def stat(admin, name):
    _, body = get(admin, "/stats?filter=^" + name.replace(".", "\\.") + "$")
    for line in body.splitlines():
        if line.startswith(name + ": "):
            return int(line.split(": ", 1)[1])
    return None


def listening_sockets(port):
    """LISTEN sockets on the port (IPv4), whoever owns them: Envoy opens one per worker
    per listener, and a draining listener keeps its own."""
    count = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                count += 1
    return count


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def measure(admin, gateway, envoy_pid):
    _, listeners = get(admin, "/listeners?format=json")
    try:
        listener_count = len(json.loads(listeners).get("listener_statuses", []))
    except ValueError:
        listener_count = None
    return {
        "rss_mb": rss_kb(envoy_pid) / 1024,
        "sockets": listening_sockets(gateway),
        "listeners": listener_count,
        "draining": stat(admin, "listener_manager.total_filter_chains_draining"),
        "modified": stat(admin, "listener_manager.listener_modified"),
        "vm_active": stat(admin, "wasm.envoy.wasm.runtime.v8.active"),
        "vm_created": stat(admin, "wasm.envoy.wasm.runtime.v8.created"),
    }


def run(name, binary, args):
    work = tempfile.mkdtemp(prefix=f"stagedoor-churn-{name}-")
    echo, gateway, xds, http_port, admin = (free_port() for _ in range(5))
    registry = os.path.join(work, "registry.yaml")

    def write_registry(public):
        tmp = registry + ".tmp"
        with open(tmp, "w") as f:
            f.write(REGISTRY.format(echo=echo, public=public))
        os.replace(tmp, registry)

    write_registry("/api/v1/venues/open-start")
    procs = []
    ok = False
    try:
        log = lambda n: open(os.path.join(work, n), "w")
        procs.append(subprocess.Popen([ECHO_BIN, "--port", str(echo), "--service", "venue"],
                                      stdout=subprocess.DEVNULL, stderr=log("echo.log")))
        procs.append(subprocess.Popen(
            [binary, "serve", "--registry", registry, "--xds", f"127.0.0.1:{xds}", "--http", f"127.0.0.1:{http_port}",
             "--listen", f"127.0.0.1:{gateway}", "--wasm", WASM],
            stdout=subprocess.DEVNULL, stderr=log("control-plane.log")))
        with open(os.path.join(ROOT, "envoy/bootstrap.yaml")) as f:
            bootstrap = (f.read().replace("${NODE_ID}", f"bench-{name}").replace("${ADMIN_PORT}", str(admin))
                         .replace("${XDS_ENDPOINTS}", ("[{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %s } } } }]" % (xds,)))
                         .replace("${XDS_API_TYPE}", "GRPC"))
        with open(os.path.join(work, "bootstrap.yaml"), "w") as f:
            f.write(bootstrap)
        envoy = subprocess.Popen(
            ["envoy", "-c", os.path.join(work, "bootstrap.yaml"), "--concurrency", str(args.concurrency),
             "--disable-hot-restart", "-l", "warning", "--drain-time-s", str(args.drain_time_s)],
            stdout=subprocess.DEVNULL, stderr=log("envoy.log"))
        procs.append(envoy)
        if not wait_until(lambda: get(gateway, "/api/v1/venues/open-start")[0] == 200, 30):
            raise SystemExit(f"{name}: gateway never served; logs in {work}")
        time.sleep(1)
        before = measure(admin, gateway, envoy.pid)
        started = time.time()
        for i in range(args.edits):
            write_registry(f"/api/v1/venues/open-{i}")
            if not wait_until(lambda: get(gateway, f"/api/v1/venues/open-{i}")[0] == 200, 10):
                raise SystemExit(f"{name}: edit {i} not enforced within 10 s; logs in {work}")
        took = time.time() - started
        after = measure(admin, gateway, envoy.pid)
        ok = True
        return before, after, took
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


ROWS = [
    ("Envoy RSS (MB)", "rss_mb", "{:.1f}"),
    ("listening sockets on the gateway port", "sockets", "{}"),
    ("listeners (/listeners)", "listeners", "{}"),
    ("draining filter chains", "draining", "{}"),
    ("listener_modified", "modified", "{}"),
    ("wasm VMs active", "vm_active", "{}"),
    ("wasm VMs created", "vm_created", "{}"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=300)
    parser.add_argument("--build", action="append", default=[], help="NAME=PATH of a stagedoor binary (repeatable)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--drain-time-s", type=int, default=600)
    parser.add_argument("--out")
    args = parser.parse_args()
    builds = [b.split("=", 1) for b in args.build] or [["this", DEFAULT_BIN]]
    results = {}
    for name, binary in builds:
        results[name] = run(name, binary, args)
        b, a, took = results[name]
        print(f"{name}: {args.edits} edits in {took:.1f} s; before {b}; after {a}", flush=True)
    header = "| | " + " | ".join(f"{n} before | {n} after" for n, _ in builds) + " |"
    lines = [
        f"{args.edits} policy-only registry edits, each waited for until enforced; Envoy 1.40, "
        f"--concurrency {args.concurrency}, --drain-time-s {args.drain_time_s}; measured right after the last edit.",
        "",
        header,
        "|---|" + "---|---|" * len(builds),
    ]
    for label, key, fmt in ROWS:
        cells = []
        for name, _ in builds:
            b, a, _ = results[name]
            cells += [fmt.format(b[key]) if b[key] is not None else "-", fmt.format(a[key]) if a[key] is not None else "-"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| time for all edits (s) | " + " | ".join(f"- | {results[n][2]:.1f}" for n, _ in builds) + " |")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)


if __name__ == "__main__":
    main()
