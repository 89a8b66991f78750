#!/usr/bin/env python3
"""Reconnect storm: N xDS streams (200, 1,000) reconnecting after a control-plane restart,
with the cap on newcomers before the TLS handshake (admission at accept:
--max-new-xds-connections-per-second with --max-xds-handshakes-in-flight), after it (the
per-stream --max-new-xds-streams-per-second, checked in the ADS handler) and off, at the
same rate, in one run.

1,000 Envoys do not fit in memory, so the storm is tools/xds-load: N simulated Envoys, each
an ADS stream on its own mutual-TLS connection under its own Envoy certificate (distinct
node ids), subscribing to every type and ACKing every response, retrying a refused stream
with Envoy's jittered backoff (500 ms base, doubling, 30 s cap). Beside them, one real
Envoy (--concurrency 1), the one whose service the cap protects.

For each size and mode: start the control plane (mutual TLS, as deployed), the real Envoy
and the N streams on free loopback ports; wait until all are synced; endpoint edits with
all connected (the "before" baseline); restart the control plane (SIGTERM, wait for it to
exit, start it again with the same flags); let the real Envoy reconnect first (the N hold
their reconnect until released: tools/xds-load --hold-reconnects), then release the N at one
instant (the worst case: real Envoys spread their retries over the backoff's jitter) and,
during the storm, make endpoint edits (EDS only: a new instance port each), one after
another, each waited for until the real Envoy has the new endpoint (its admin /clusters,
polled every 5 ms) and at least --edit-interval-ms apart, until all N are synced again; one
operator CLI call (`stagedoor status --node`, over the gRPC port the storm is on) half a
second into the storm; then the same edits with the storm over ("after"). Reports:
  - the time from the release until all N streams are synced again, per-stream p50/p99;
  - what the admission did: connections queued, abandoned while queued, closed with the
    queue full (stagedoor_xds_connections_*_total), streams refused after the handshake
    (stagedoor_xds_streams_refused_total), refusals as the N saw them;
  - the real Envoy's EDS push-to-ACK (the ledger's answered_after_ms: response sent to ACK
    received) before, during and after the storm, and edit written to applied by the real
    Envoy during and after (file watch, translation, the wait for the stream's turn and
    Envoy's own work included), p50/p99;
  - how long the operator's CLI call took in the storm.
Bounded: every wait has a limit, at most --max-edits edits per phase, the load tool stops
itself after --max-seconds and when its stdin closes.

Usage: bench/reconnect.py [--sizes 200,1000] [--modes before,after,off] [--rate 50]
                          [--out bench/results-reconnect.md]
"""

import argparse
import json
import os
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WASM = os.path.join(ROOT, "target/wasm32-wasip1/release/stagedoor_filter.wasm")
BIN = os.environ.get("STAGEDOOR_BIN", os.path.join(ROOT, "target/debug/stagedoor"))
ECHO_BIN = os.environ.get("STAGEDOOR_ECHO_BIN", os.path.join(ROOT, "target/debug/stagedoor-echo"))
LOAD_BIN = os.environ.get("STAGEDOOR_XDS_LOAD_BIN", os.path.join(ROOT, "target/debug/stagedoor-xds-load"))
REAL = "bench-real"

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
  - name: ticket
    routes: [{{ prefix: /api/v1/tickets }}]
    instances: [{{ address: 127.0.0.2, port: 9 }}]
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


def now_ms():
    return int(time.time() * 1000)


def wait(what, limit, check, every=0.05):
    started = time.time()
    while time.time() - started < limit:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"bench/reconnect.py: {what} did not happen within {limit} s")


class LoadTool:
    """tools/xds-load as a child: its JSON-line events read by a thread into a queue."""

    def __init__(self, args, streams, tls, xds, types, log):
        self.proc = subprocess.Popen(
            [LOAD_BIN, "--xds", f"127.0.0.1:{xds}", "--tls-dir", tls, "--streams", str(streams),
             "--node-prefix", "load-", "--types", ",".join(types), "--hold-reconnects", "--max-seconds", str(args.max_seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        self.events = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                pass
        self.events.put({"event": "exited"})

    def release(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def until(self, name, limit, seen):
        """Events up to and including the first `name` (within `limit` s), appended to `seen`."""
        deadline = time.time() + limit
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise SystemExit(f"bench/reconnect.py: the load tool said no {name} within {limit} s")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            seen.append(event)
            if event["event"] == "exited":
                raise SystemExit("bench/reconnect.py: the load tool exited (its log is in the work dir)")
            if event["event"] == name:
                return event

    def drain(self, seen):
        while True:
            try:
                seen.append(self.events.get_nowait())
            except queue.Empty:
                return

    def stop(self):
        try:
            self.proc.stdin.close()  # the tool stops when its stdin closes
        except OSError:
            pass


MODES = {
    # Admission at accept, before the handshake; the per-stream cap off.
    "before": lambda rate: ["--max-new-xds-connections-per-second", str(rate), "--max-xds-handshakes-in-flight", "16",
                            "--max-new-xds-streams-per-second", "0"],
    # The per-stream cap in the ADS handler, after the handshake; no admission at accept.
    "after": lambda rate: ["--max-new-xds-connections-per-second", "0", "--max-xds-handshakes-in-flight", "0",
                           "--max-new-xds-streams-per-second", str(rate)],
    "off": lambda rate: ["--max-new-xds-connections-per-second", "0", "--max-xds-handshakes-in-flight", "0",
                         "--max-new-xds-streams-per-second", "0"],
}

COUNTERS = ["stagedoor_xds_connections_queued_total", "stagedoor_xds_connections_abandoned_total",
            "stagedoor_xds_connections_closed_queue_full_total", "stagedoor_xds_streams_refused_total"]


def run(mode, streams, args, tls):
    flags = MODES[mode](args.rate)
    work = tempfile.mkdtemp(prefix=f"stagedoor-reconnect-{mode}-{streams}-")
    echo, gateway, xds, http_port, metrics_port = (free_port() for _ in range(5))
    registry = os.path.join(work, "registry.yaml")
    log = lambda n: open(os.path.join(work, n), "a")

    def write_registry(extra_port):
        instances = f"{{ address: 127.0.0.1, port: {echo} }}"
        if extra_port:
            instances += f", {{ address: 127.0.0.2, port: {extra_port} }}"
        tmp = registry + ".tmp"
        with open(tmp, "w") as f:
            f.write(REGISTRY.format(instances=instances))
        os.replace(tmp, registry)

    context = ssl.create_default_context(cafile=os.path.join(tls, "ca.pem"))
    context.check_hostname = False  # loopback; the CA is checked
    context.load_cert_chain(os.path.join(tls, "operator.pem"), os.path.join(tls, "operator-key.pem"))

    def status():
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{http_port}/status", context=context, timeout=10) as r:
                return json.loads(r.read())
        except OSError:
            return {}

    def counters():
        found = {}
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
                for line in r.read().decode().splitlines():
                    name = line.split(" ")[0]
                    if name in COUNTERS:
                        found[name] = int(float(line.split()[1]))
        except OSError:
            pass
        return {name: found.get(name, 0) for name in COUNTERS}

    def cli_call_ms():
        """One operator CLI call over the gRPC port (CSDS, one node): its wall time."""
        started = time.time()
        done = subprocess.run([BIN, "status", "--node", REAL, "-o", "json", "--server", f"https://127.0.0.1:{xds}", "--tls-dir", tls],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120)
        took = int((time.time() - started) * 1000)
        return took if done.returncode == 0 else f"failed after {took} ms: {done.stderr.strip()[-200:]}"

    def real_envoy():
        return next((e for e in status().get("envoys", []) if e.get("node_id") == REAL), None)

    def real_synced():
        e = real_envoy()
        return e is not None and e.get("state") == "SYNCED"

    def start_control_plane():
        procs_cp = subprocess.Popen(
            [BIN, "serve", "--registry", registry, "--xds", f"127.0.0.1:{xds}", "--http", f"127.0.0.1:{http_port}",
             "--metrics", f"127.0.0.1:{metrics_port}", "--listen", f"127.0.0.1:{gateway}", "--wasm", WASM, "--tls-dir", tls]
            + flags,
            cwd=work, stdout=subprocess.DEVNULL, stderr=log("control-plane.log"))
        procs.append(procs_cp)

        def listening():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", xds)) == 0
        wait("the control plane listening", 30, listening)
        return procs_cp

    admin_port = free_port()
    edit_ports = iter(range(10000, 20000))

    def real_has(port):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/clusters", timeout=10) as r:
                return f"svc_venue::127.0.0.2:{port}::" in r.read().decode()
        except OSError:
            return False

    def edit_phase(until_done, max_edits):
        """EDS edits (a new instance port each) until `until_done()` or max_edits, each waited
        for until the real Envoy has it (its admin /clusters, polled), at least
        --edit-interval-ms apart. Their write times, and write-to-applied ms."""
        written, applied = [], []
        while len(written) < max_edits and not until_done():
            port = next(edit_ports)
            started = time.time()
            written.append(now_ms())
            write_registry(port)
            wait(f"the real Envoy applying edit {port}", 60, lambda: real_has(port), every=0.005)
            applied.append(int((time.time() - started) * 1000))
            time.sleep(max(0, args.edit_interval_ms / 1000 - (time.time() - started)))
        return written, applied

    def real_eds_pushes(since_ms, until_ms):
        """Push-to-ACK ms of the real Envoy's EDS pushes sent in the window (the ledger's)."""
        e = real_envoy() or {}
        return [p["answered_after_ms"] for p in e.get("history", [])
                if p.get("type") == "EDS" and p.get("outcome") == "ACKED" and since_ms <= p.get("sent_at_unix_ms", 0) <= until_ms]

    procs = []
    load = None
    ok = False
    try:
        write_registry(None)
        procs.append(subprocess.Popen([ECHO_BIN, "--port", str(echo), "--service", "venue"],
                                      stdout=subprocess.DEVNULL, stderr=log("echo.log")))
        control_plane = start_control_plane()
        with open(os.path.join(ROOT, "envoy/bootstrap.yaml")) as f:
            template = f.read()
        bootstrap = (template.replace("${NODE_ID}", REAL).replace("${ADMIN_PORT}", str(admin_port))
                     .replace("${XDS_ENDPOINTS}", "[{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %d } } } }]" % xds)
                     .replace("${XDS_API_TYPE}", "GRPC").replace("${TLS_DIR}", tls))
        path = os.path.join(work, f"bootstrap-{REAL}.yaml")
        with open(path, "w") as f:
            f.write(bootstrap)
        procs.append(subprocess.Popen(
            ["envoy", "-c", path, "--concurrency", "1", "--disable-hot-restart", "-l", "error", "--drain-time-s", "1"],
            stdout=subprocess.DEVNULL, stderr=log(f"envoy-{REAL}.log")))
        wait("the real Envoy synced", 60, real_synced)
        types = [t for t in ["CDS", "EDS", "LDS", "RDS", "ECDS", "SDS"] if t in status().get("type_versions", {})]

        events = []
        load = LoadTool(args, streams, tls, xds, types, log("xds-load.log"))
        load.until("all_synced", args.max_seconds, events)
        before_restart = status()
        connected = len(before_restart.get("envoys", []))
        if connected != streams + 1:
            raise SystemExit(f"bench/reconnect.py: {connected} Envoys connected before the restart, expected {streams + 1}")
        # The baseline before the storm: the same edits with all connected and synced.
        before_from = now_ms()
        _, before_applied = edit_phase(lambda: False, args.quiet_edits)
        time.sleep(1)
        before_to_ack = real_eds_pushes(before_from, now_ms())

        # The restart.
        stopped_at = now_ms()
        control_plane.send_signal(signal.SIGTERM)
        control_plane.wait(timeout=30)
        lost = lambda: sum(1 for e in events if e["event"] == "lost") >= streams
        deadline = time.time() + 30
        while not lost() and time.time() < deadline:
            load.drain(events)
            time.sleep(0.05)
        if not lost():
            raise SystemExit(f"bench/reconnect.py: the {streams} streams did not all end with the control plane")
        control_plane = start_control_plane()
        up_at = now_ms()
        wait("the real Envoy synced after the restart", 60, real_synced)
        real_back_at = now_ms()
        counted_before_storm = counters()

        # The storm, with edits during it, and an operator's CLI call half a second in.
        events = []
        load.release()
        released = load.until("released", 10, events)["unix_ms"]
        storm_over = []
        cli_in_storm = []

        def operator():
            time.sleep(0.5)
            cli_in_storm.append(cli_call_ms())
        operator_thread = threading.Thread(target=operator, daemon=True)
        operator_thread.start()

        def all_back():
            load.drain(events)
            done = [e for e in events if e["event"] == "all_synced"]
            if done:
                storm_over.append(done[0]["unix_ms"])
            return bool(done)
        storm_edits, storm_applied = edit_phase(all_back, args.max_edits)
        if not storm_over:
            load.until("all_synced", args.max_seconds, events)
            all_back()
        all_synced_at = storm_over[0]
        time.sleep(1)  # the last edits' ACKs
        storm_to_ack = real_eds_pushes(released, all_synced_at)
        operator_thread.join(timeout=120)
        counted = {name: n - counted_before_storm[name] for name, n in counters().items()}
        synced = [e for e in events if e["event"] == "synced"]
        per_stream = [e["unix_ms"] - released for e in synced]
        client_refusals = sum(1 for e in events if e["event"] == "refused")

        # The same edits with the storm over: the baseline of this run.
        quiet_from = now_ms()
        _, quiet_applied = edit_phase(lambda: False, args.quiet_edits)
        time.sleep(1)
        quiet_to_ack = real_eds_pushes(quiet_from, now_ms())
        cli_after = cli_call_ms()
        ok = True
        return {
            "mode": mode, "streams": streams, "flags": " ".join(flags),
            "restart_to_up_ms": up_at - stopped_at, "up_to_real_synced_ms": real_back_at - up_at,
            "storm_ms": all_synced_at - released, "per_stream_ms": per_stream, "streams_synced": len(synced),
            "counted": counted, "client_refusals": client_refusals,
            "before_to_ack": before_to_ack, "before_applied": before_applied,
            "storm_edits": len(storm_edits), "storm_to_ack": storm_to_ack, "storm_applied": storm_applied,
            "quiet_to_ack": quiet_to_ack, "quiet_applied": quiet_applied,
            "cli_in_storm": cli_in_storm[0] if cli_in_storm else "no answer in 120 s", "cli_after": cli_after,
        }
    finally:
        if load is not None:
            load.stop()
            try:
                load.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                load.proc.kill()
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs kept in {work}", flush=True)


def fmt(values, p):
    v = percentile(values, p)
    return "-" if v is None else str(v)


def ratio(a, b):
    return "-" if a is None or not b else f"{a / b:.1f}x"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,1000", help="stream counts, one storm each per mode")
    parser.add_argument("--modes", default="before,after,off", help="where the cap applies: before (the handshake), after, off")
    parser.add_argument("--rate", type=int, default=50, help="new connections (before) or streams (after) a second")
    parser.add_argument("--edit-interval-ms", type=int, default=200)
    parser.add_argument("--max-edits", type=int, default=25, help="edits during one storm, at most (the ledger keeps 32 pushes a node)")
    parser.add_argument("--quiet-edits", type=int, default=10)
    parser.add_argument("--max-seconds", type=int, default=300, help="the load tool stops after this long")
    parser.add_argument("--out")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    modes = args.modes.split(",")
    for mode in modes:
        if mode not in MODES:
            raise SystemExit(f"--modes: {mode!r} is not one of {', '.join(MODES)}")
    tls_work = tempfile.mkdtemp(prefix="stagedoor-reconnect-tls-")
    tls = os.path.join(tls_work, ".stagedoor")
    subprocess.run([BIN, "certs", "init", "--dir", tls], check=True, stdout=subprocess.DEVNULL)
    for node in [REAL] + [f"load-{i}" for i in range(max(sizes))]:
        subprocess.run([BIN, "certs", "envoy", "--dir", tls, "--node-id", node], check=True, stdout=subprocess.DEVNULL)
    lines = [
        "| streams | cap | release to all synced ms | per stream p50 / p99 ms | queued / abandoned / closed (queue full) | refused after the handshake | refusals seen by the streams | edits in the storm | real Envoy EDS push-to-ACK p50 / p99 ms: before | storm | after | ratio p99 storm / before | edit written to applied p50 / p99 ms: storm | after | operator CLI call in the storm / after ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    results = []
    try:
        for streams in sizes:
            for mode in modes:
                r = run(mode, streams, args, tls)
                results.append(r)
                if r["streams_synced"] < streams:
                    raise SystemExit(f"{mode} {streams}: only {r['streams_synced']} of {streams} streams synced")
                name = {"before": f"before the handshake, {args.rate}/s", "after": f"after the handshake, {args.rate}/s", "off": "off"}[mode]
                c = r["counted"]
                p99 = lambda k: percentile(r[k], 99)
                pair = lambda k: f"{fmt(r[k], 50)} / {fmt(r[k], 99)}"
                lines.append(
                    f"| {streams} | {name} | {r['storm_ms']} | {pair('per_stream_ms')} | "
                    f"{c['stagedoor_xds_connections_queued_total']} / {c['stagedoor_xds_connections_abandoned_total']} / {c['stagedoor_xds_connections_closed_queue_full_total']} | "
                    f"{c['stagedoor_xds_streams_refused_total']} | {r['client_refusals']} | {r['storm_edits']} ({len(r['storm_to_ack'])} pushes) | "
                    f"{pair('before_to_ack')} | {pair('storm_to_ack')} | {pair('quiet_to_ack')} | {ratio(p99('storm_to_ack'), p99('before_to_ack'))} | "
                    f"{pair('storm_applied')} | {pair('quiet_applied')} | {r['cli_in_storm']} / {r['cli_after']} |"
                )
                print("\n".join(lines), flush=True)
    finally:
        shutil.rmtree(tls_work, ignore_errors=True)
        with open(os.path.join(tempfile.gettempdir(), "stagedoor-reconnect-results.json"), "w") as f:
            json.dump(results, f)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# Reconnect storm (bench/reconnect.py)\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
