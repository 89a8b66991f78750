#!/usr/bin/env python3
"""What TLS costs, in one run on this machine.

1. Request cost over HTTPS, handshake-free (one keep-alive connection per client): plain
   Envoy over HTTP, plain Envoy over HTTPS with the edge certificate `stagedoor certs init`
   writes, and Stagedoor as deployed (`stagedoor serve` feeding Envoy over mutual-TLS ADS)
   over HTTP (no `edge_tls`) and over HTTPS (`edge_tls` serving that same certificate). Instructions per request under callgrind (as
   deployed_cost.py: counting off at start, 300 warm-up requests, --requests counted one
   after another on one connection, then a 10 s idle window whose rate is taken off), and
   CPU time per request from paired wrk rounds (filter_cost.py's method: every Envoy on core
   0 loaded at once, wrk on core 1, utime+stime over the requests completed).
2. xDS push latency with mutual TLS against `serve --insecure`: a registry edit (a new
   public route) written by rename, to the first 200 on the new path through Envoy
   ("visible") and to the control plane's /status showing every type ACKed at the new
   versions ("ACKed"); --edits edits per control plane, interleaved.

Workload: GET /api/v1/venues/v1 with an HS256 bearer token and a spoofed x-tenant-id (200).
Every Envoy runs --concurrency 1. Bounded: every wait has a deadline, --rounds x --seconds
bursts, --edits edits. Needs valgrind, wrk, taskset. Kills only what it started.

Usage: bench/tls_cost.py [--requests 1000] [--rounds 5] [--seconds 3] [--edits 15] [--no-callgrind]
                         [--out bench/results-tls.md]
"""

import argparse
import datetime
import http.client
import json
import os
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import filter_cost as fc  # noqa: E402  (ports, the static gateway and upstream, wrk, CPU ticks)
import filter_instructions as fi  # noqa: E402  (the Envoy binary, callgrind_control)

READY_TIMEOUT = 420  # Envoy compiling the wasm module under valgrind, next to other builds
WARM_REQUESTS = 300
IDLE_SECONDS = 10
PATH = "/api/v1/venues/v1"
SECRET = "stagedoor-dev-secret-change-me-0123456789"

REGISTRY = """auth:
  issuer: tickettoken
  audience: tickettoken-platform
  leeway_secs: 30
  keys:
    - algorithms: [HS256]
      secret: {secret}
      dev: true
{edge}services:
  - name: venue
    routes:
      - prefix: /api/v1/venues
{extra_routes}    instances:
      - address: 127.0.0.1
        port: {upstream}
    public_paths: ["/api/v1/bench/*"]
"""

EDGE = """edge_tls:
  port: {port}
  certificates:
    - server_names: [localhost]
      cert_file: {tls}/edge.pem
      key_file: {tls}/edge-key.pem
"""

# The static gateway's HTTPS: the same certificate files, Envoy's TLS defaults, ALPN as the
# Stagedoor listener offers it (h2 first; http.client and wrk speak http/1.1).
TLS_CHAIN = """        - transport_socket:
            name: envoy.transport_sockets.tls
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
              common_tls_context:
                alpn_protocols: [h2, http/1.1]
                tls_certificates:
                  - certificate_chain: {{ filename: {tls}/edge.pem }}
                    private_key: {{ filename: {tls}/edge-key.pem }}
          filters:"""


def stagedoor(*args, cwd=None):
    return subprocess.run([fc.BIN, *args], check=True, capture_output=True, text=True, timeout=60, cwd=cwd).stdout.strip()


def write_registry(path, upstream, tls_dir=None, https_port=None, extra_routes=""):
    edge = EDGE.format(port=https_port, tls=tls_dir) if https_port else ""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(REGISTRY.format(secret=SECRET, edge=edge, upstream=upstream, extra_routes=extra_routes))
    os.rename(tmp, path)


class Gateway:
    """Where a configuration answers: scheme, port, and the client TLS context."""

    def __init__(self, name, port, context=None):
        self.name, self.port, self.context = name, port, context

    def connection(self, timeout=60):
        if self.context:
            return http.client.HTTPSConnection("localhost", self.port, timeout=timeout, context=self.context)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def url(self):
        return f"{'https' if self.context else 'http'}://127.0.0.1:{self.port}{PATH}"


def send(gateway, token, n, deadline):
    conn = gateway.connection()
    try:
        for _ in range(n):
            if time.time() > deadline:
                raise SystemExit(f"{gateway.name}: requests took too long")
            conn.request("GET", PATH, headers={"Authorization": f"Bearer {token}", "x-tenant-id": "evil"})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"{gateway.name} answered {response.status}; the configuration is wrong")
    finally:
        conn.close()


def wait_ok(gateway, token, timeout, process=None):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"{gateway.name}: Envoy exited ({process.returncode})")
        try:
            send(gateway, token, 1, deadline)
            return
        except (OSError, http.client.HTTPException, SystemExit) as e:
            last = e
            time.sleep(0.5)
    raise SystemExit(f"{gateway.name} never answered 200: {last}")


class ControlPlane:
    def __init__(self, workdir, name, registry, tls_dir, processes, insecure=False):
        self.name, self.tls_dir, self.insecure = name, tls_dir, insecure
        self.xds, self.http, self.metrics, self.listen = (fc.free_port() for _ in range(4))
        self.log_path = os.path.join(workdir, f"control-plane-{name}.log")
        log = open(self.log_path, "w")
        command = [fc.BIN, "serve", "--registry", registry, "--xds", f"127.0.0.1:{self.xds}", "--http", f"127.0.0.1:{self.http}",
                   "--metrics", f"127.0.0.1:{self.metrics}", "--tls-dir", tls_dir, "--listen", f"127.0.0.1:{self.listen}",
                   "--wasm", fc.WASM] + (["--insecure"] if insecure else [])
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "NO_COLOR": "1"},
                                        cwd=workdir)
        processes.append(self.process)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"control plane {name} exited; see its log in {workdir}")
            conn = http.client.HTTPConnection("127.0.0.1", self.metrics, timeout=2)
            try:
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            time.sleep(0.3)
        raise SystemExit(f"control plane {name} never answered /healthz")

    def last_applied(self):
        """When the control plane last logged `registry edit applied` (unix seconds; its log
        timestamps are UTC), or None."""
        with open(self.log_path) as f:
            lines = [line for line in f if "registry edit applied" in line]
        if not lines:
            return None
        stamp = datetime.datetime.strptime(lines[-1].split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
        return stamp.replace(tzinfo=datetime.timezone.utc).timestamp()

    def status(self):
        """/status on one kept connection (the operator certificate, or plain with
        --insecure), so polling it costs no handshake per poll."""
        for _ in range(2):
            if getattr(self, "status_conn", None) is None:
                if self.insecure:
                    self.status_conn = http.client.HTTPConnection("127.0.0.1", self.http, timeout=5)
                else:
                    context = ssl.create_default_context(cafile=os.path.join(self.tls_dir, "ca.pem"))
                    context.load_cert_chain(os.path.join(self.tls_dir, "operator.pem"), os.path.join(self.tls_dir, "operator-key.pem"))
                    self.status_conn = http.client.HTTPSConnection("127.0.0.1", self.http, timeout=5, context=context)
            try:
                self.status_conn.request("GET", "/status")
                return json.loads(self.status_conn.getresponse().read())
            except (OSError, http.client.HTTPException):
                self.status_conn.close()
                self.status_conn = None
        raise SystemExit(f"control plane {self.name}: /status does not answer")

    def bootstrap(self, workdir, node, admin):
        stagedoor("certs", "envoy", "--dir", self.tls_dir, "--node-id", node)
        with open(os.path.join(fc.ROOT, "envoy/bootstrap.yaml")) as f:
            text = f.read()
        for key, value in (("NODE_ID", node), ("ADMIN_PORT", admin), ("XDS_ENDPOINTS", ("[{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %s } } } }]" % (self.xds,))),
                           ("XDS_API_TYPE", "GRPC"), ("TLS_DIR", self.tls_dir)):
            text = text.replace("${" + key + "}", str(value))
        if self.insecure:
            # The xds cluster's transport_socket is its last block: plain gRPC instead.
            text = text[:text.index("      transport_socket:")]
        path = os.path.join(workdir, f"bootstrap-{node}.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path


def start_envoy(config_path, workdir, name, cpu=None, callgrind=False):
    log = open(os.path.join(workdir, f"{name}.log"), "w")
    command = [fi.envoy_binary(), "-c", config_path, "--concurrency", "1", "--disable-hot-restart", "-l", "warning",
               "--drain-time-s", "1"]
    if callgrind:
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={os.path.join(workdir, name)}.callgrind",
                   "--instr-atstart=no"] + command
    if cpu is not None:
        command = ["taskset", "-c", str(cpu)] + command
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)


def static_gateway(workdir, name, port, upstream, tls_dir):
    yaml_text = fc.gateway_yaml("", port, fc.free_port(), upstream)
    if tls_dir:
        chain = "        - filters:"
        if yaml_text.count(chain) != 1:
            raise SystemExit("filter_cost.BOOTSTRAP changed shape: cannot add TLS to its filter chain")
        yaml_text = yaml_text.replace(chain, TLS_CHAIN.format(tls=tls_dir))
    path = os.path.join(workdir, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(yaml_text)
    return path


# --- instructions ---------------------------------------------------------------------------

def instructions(label, config_path, workdir, gateway, token, requests):
    envoy = start_envoy(config_path, workdir, label, callgrind=True)
    started = time.time()
    try:
        wait_ok(gateway, token, READY_TIMEOUT, envoy)
        send(gateway, token, WARM_REQUESTS, time.time() + 600)
        fi.control(envoy.pid, "--instr=on")
        window = time.time()
        send(gateway, token, requests, time.time() + 900)
        fi.control(envoy.pid, "--dump")
        window = time.time() - window
        fi.control(envoy.pid, "--instr=off")
        fi.control(envoy.pid, "--instr=on")
        idle = time.time()
        time.sleep(IDLE_SECONDS)
        fi.control(envoy.pid, "--dump")
        idle = time.time() - idle
        fi.control(envoy.pid, "--instr=off")
    finally:
        envoy.terminate()
        envoy.wait(timeout=120)
    dumps = sorted((f for f in os.listdir(workdir) if re.fullmatch(rf"{re.escape(label)}\.callgrind\.\d+", f)),
                   key=lambda f: int(f.rsplit(".", 1)[1]))
    if len(dumps) != 2:
        raise SystemExit(f"{label}: expected 2 callgrind dumps, found {dumps}")
    totals = []
    for name in dumps:
        with open(os.path.join(workdir, name)) as f:
            totals.append(int(re.search(r"^totals:\s+(\d+)", f.read(), re.M).group(1)))
    counted, less_idle = totals[0] / requests, (totals[0] - totals[1] / idle * window) / requests
    print(f"{label}: {counted:,.0f} instructions/request ({less_idle:,.0f} less idle; {time.time() - started:.0f} s)", file=sys.stderr)
    return counted, less_idle


# --- CPU ------------------------------------------------------------------------------------

def wrk_command(gateway, seconds, token):
    return ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", "-H", f"Authorization: Bearer {token}",
            "-H", "x-tenant-id: evil", gateway.url()]


def cpu_rounds(gateways, rounds, seconds, token):
    """Every gateway loaded at once per burst (they share core 0): ratios hold while the
    machine drifts. wrk keeps its 32 connections open, so handshakes are once per burst."""
    results = {g.name: [] for g, _ in gateways}
    for g, _ in gateways:
        subprocess.run(wrk_command(g, 2, token), capture_output=True, check=True)
    for round_no in range(rounds):
        before = [fc.cpu_ticks(p.pid) for _, p in gateways]
        loads = [subprocess.Popen(wrk_command(g, seconds, token), stdout=subprocess.PIPE, text=True) for g, _ in gateways]
        outs = [load.communicate(timeout=seconds + 60)[0] for load in loads]
        after = [fc.cpu_ticks(p.pid) for _, p in gateways]
        for (g, _), out, b, a in zip(gateways, outs, before, after):
            r = fc.summarize(g.name, out, a - b, seconds)
            results[g.name].append(r)
            print(f"cpu round {round_no + 1} {g.name}: {r['cpu_us']:.1f} µs/req, {r['rps']:.0f} rps", file=sys.stderr)
    return results


# --- push latency -----------------------------------------------------------------------------

def all_acked(status):
    versions = status.get("type_versions", {})
    envoys = status.get("envoys", [])
    return bool(envoys) and all(
        envoy["types"].get(t, {}).get("acked_version") == v for envoy in envoys for t, v in versions.items() if t in envoy["types"])


def get_status(gateway, path):
    conn = gateway.connection(timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def push_latency(stacks, edits, upstream):
    """stacks: [(name, control plane, registry path, gateway)]; edits interleaved. Visible:
    the first 200 on the new route; ACKed: /status shows new type versions (the snapshot
    made from the edit) each ACKed by the Envoy."""
    results = {name: {"visible": [], "acked": [], "visible_after_apply": [], "acked_after_apply": []} for name, _, _, _ in stacks}
    for i in range(edits):
        for name, cp, registry, gateway in stacks:
            prefix = f"/api/v1/bench/e{i}"
            routes = "".join(f"      - prefix: /api/v1/bench/e{j}\n" for j in range(i + 1))
            before = cp.status()["type_versions"]
            started = time.time()
            write_registry(registry, upstream, extra_routes=routes)
            deadline = started + 20
            seen = {}

            # Two pollers at once, so neither's cost delays the other's figure.
            def poll_visible():
                while time.time() < deadline:
                    if get_status(gateway, prefix + "/x") == 200:
                        seen["visible"] = time.time() - started
                        return
                    time.sleep(0.002)

            def poll_acked():
                while time.time() < deadline:
                    status = cp.status()
                    if status["type_versions"] != before and all_acked(status):
                        seen["acked"] = time.time() - started
                        return
                    time.sleep(0.002)
            pollers = [threading.Thread(target=poll_visible), threading.Thread(target=poll_acked)]
            for poller in pollers:
                poller.start()
            for poller in pollers:
                poller.join()
            visible, acked = seen.get("visible"), seen.get("acked")
            if visible is None or acked is None:
                raise SystemExit(f"{name}: edit {i} not visible/ACKed within 20 s")
            applied = cp.last_applied()
            if applied is None or applied < started - 0.001:
                raise SystemExit(f"{name}: edit {i}: no `registry edit applied` logged after the edit")
            applied -= started
            results[name]["visible"].append(visible * 1000)
            results[name]["acked"].append(acked * 1000)
            results[name]["visible_after_apply"].append((visible - applied) * 1000)
            results[name]["acked_after_apply"].append((acked - applied) * 1000)
            print(f"push {i} {name}: applied {applied * 1000:.0f} ms, visible {visible * 1000:.0f} ms, "
                  f"ACKed {acked * 1000:.0f} ms", file=sys.stderr)
    return results


# --- report -----------------------------------------------------------------------------------

def quantile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(args, counts, cpu, pushes):
    lines = [f"bench/tls_cost.py on {os.uname().nodename}, {time.strftime('%Y-%m-%d %H:%M')}; Envoy 1.40 --concurrency 1, "
             "target/debug/stagedoor serve. Certificate: the edge.pem `stagedoor certs init` writes (ECDSA P-256), "
             "the same files for plain Envoy and Stagedoor.", ""]
    if counts:
        base = counts["plain Envoy, HTTPS"]
        lines += ["## Request cost, handshake-free (callgrind, one keep-alive connection)", "",
                  f"{args.requests} requests counted after {WARM_REQUESTS} warm-up; \"less idle\": minus the per-second rate "
                  f"of a {IDLE_SECONDS} s idle window times the counted window.", "",
                  "| Envoy with ... | instructions/req | less idle | x plain HTTPS (less idle) |", "|---|---:|---:|---:|"]
        for name, (counted, less_idle) in counts.items():
            lines.append(f"| {name} | {counted:,.0f} | {less_idle:,.0f} | {less_idle / base[1]:.2f} |")
        lines.append("")
    if cpu:
        lines += ["## CPU per request (paired wrk rounds, 32 keep-alive connections)", "",
                  f"{args.rounds} rounds x {args.seconds} s, every Envoy on core 0 at once, wrk on core 1; medians.", "",
                  "| Envoy with ... | µs/req | x plain HTTPS | rps | p50 µs | p99 µs |", "|---|---:|---:|---:|---:|---:|"]
        base = statistics.median(r["cpu_us"] for r in cpu["plain Envoy, HTTPS"])
        for name, rounds in cpu.items():
            us = statistics.median(r["cpu_us"] for r in rounds)
            lines.append(f"| {name} | {us:.1f} | {us / base:.2f} | {statistics.median(r['rps'] for r in rounds):.0f} | "
                         f"{statistics.median(r['p50'] for r in rounds):.0f} | {statistics.median(r['p99'] for r in rounds):.0f} |")
        lines.append("")
    if pushes:
        lines += ["## xDS push latency: registry edit to Envoy", "",
                  f"{args.edits} edits per control plane (a new public route, the registry written by rename), interleaved. "
                  "From the write: the control plane polls the file every 200 ms, so up to 200 ms of it is the poll. "
                  "From the apply: from the control plane's `registry edit applied` log line (validated, translated, "
                  "published) to the first 200 on the new route through Envoy (visible) and to /status showing the new "
                  "versions ACKed (ACKed, polled over the same TLS or plain HTTP side).", "",
                  "| control plane | from the write: visible p50 / p90 / max ms | ACKed p50 / p90 / max | "
                  "from the apply: visible p50 / p90 / max ms | ACKed p50 / p90 / max |", "|---|---:|---:|---:|---:|"]

        def three(values):
            return f"{statistics.median(values):.0f} / {quantile(values, 0.9):.0f} / {max(values):.0f}"
        for name, r in pushes.items():
            lines.append(f"| {name} | {three(r['visible'])} | {three(r['acked'])} | {three(r['visible_after_apply'])} | "
                         f"{three(r['acked_after_apply'])} |")
        lines.append("")
    with open(args.out, "w") as f:
        f.write("# TLS: request cost and push latency\n\n" + "\n".join(lines))
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--edits", type=int, default=15)
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--out", default=os.path.join(fc.ROOT, "bench/results-tls.md"))
    args = ap.parse_args()
    processes = []
    with tempfile.TemporaryDirectory(prefix="stagedoor-bench-tls-") as workdir:
        try:
            tls_dir = os.path.join(workdir, ".stagedoor")
            stagedoor("certs", "init", "--dir", tls_dir)
            context = ssl.create_default_context(cafile=os.path.join(tls_dir, "ca.pem"))
            upstream = fc.free_port()
            processes.append(fc.start_envoy(fc.UPSTREAM.format(admin=fc.free_port(), port=upstream), 1, workdir, "upstream"))

            https_port = fc.free_port()
            tls_registry = os.path.join(workdir, "registry-tls.yaml")
            write_registry(tls_registry, upstream, tls_dir, https_port)
            token = stagedoor("token", "--registry", tls_registry, "--role", "venue-manager", "--venues", "v1,v2", "--ttl", "2h")
            cp = ControlPlane(workdir, "tls", tls_registry, tls_dir, processes)
            stagedoor_bootstrap = cp.bootstrap(workdir, "bench-tls", fc.free_port())
            # The same registry without edge_tls: what TLS adds to Stagedoor itself.
            plain_registry = os.path.join(workdir, "registry-plain.yaml")
            write_registry(plain_registry, upstream)
            plain_cp = ControlPlane(workdir, "plain", plain_registry, tls_dir, processes)
            plain_bootstrap = plain_cp.bootstrap(workdir, "bench-plain", fc.free_port())
            plain_http_port, plain_https_port = fc.free_port(), fc.free_port()
            configs = [
                ("plain Envoy, HTTP", static_gateway(workdir, "plain-http", plain_http_port, upstream, None), Gateway("plain Envoy, HTTP", plain_http_port)),
                ("plain Envoy, HTTPS", static_gateway(workdir, "plain-https", plain_https_port, upstream, tls_dir),
                 Gateway("plain Envoy, HTTPS", plain_https_port, context)),
                ("Stagedoor over ADS, HTTP", plain_bootstrap, Gateway("Stagedoor over ADS, HTTP", plain_cp.listen)),
                ("Stagedoor over ADS, HTTPS", stagedoor_bootstrap, Gateway("Stagedoor over ADS, HTTPS", https_port, context)),
            ]
            counts = {}
            if not args.no_callgrind:
                for name, config, gateway in configs:
                    label = re.sub(r"\W+", "-", name.lower()).strip("-")
                    counts[name] = instructions(label, config, workdir, gateway, token, args.requests)
            gateways = []
            for name, config, gateway in configs:
                label = "cpu-" + re.sub(r"\W+", "-", name.lower()).strip("-")
                process = start_envoy(config, workdir, label, cpu=0)
                processes.append(process)
                gateways.append((gateway, process))
            for gateway, process in gateways:
                wait_ok(gateway, token, 120, process)
            cpu = cpu_rounds(gateways, args.rounds, args.seconds, token)
            for _, process in gateways:
                process.terminate()

            stacks = []
            for name, insecure in (("mutual TLS", False), ("--insecure", True)):
                label = "push-" + ("insecure" if insecure else "mtls")
                registry = os.path.join(workdir, f"registry-{label}.yaml")
                write_registry(registry, upstream)
                push_cp = ControlPlane(workdir, label, registry, tls_dir, processes, insecure=insecure)
                envoy = start_envoy(push_cp.bootstrap(workdir, f"bench-{label}", fc.free_port()), workdir, label)
                processes.append(envoy)
                gateway = Gateway(name, push_cp.listen)
                wait_ok(gateway, token, 60, envoy)
                stacks.append((name, push_cp, registry, gateway))
            pushes = push_latency(stacks, args.edits, upstream)
            report(args, counts, cpu, pushes)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == "__main__":
    main()
