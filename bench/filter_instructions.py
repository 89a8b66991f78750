#!/usr/bin/env python3
"""Instructions Envoy executes per request, per configuration: the same gateways as
filter_cost.py, each run under valgrind's callgrind, which counts every instruction Envoy
executes (its own code, libc, and the V8-compiled wasm alike).

Why a second benchmark: CPU time on these shared VMs drifts by a third within minutes, so
filter_cost.py needs many paired rounds and still moves by 0.1 in its ratios from run to
run. An instruction count does not drift: two windows of the same run agree to within
0.1%, and so do two runs. It is not CPU time (a cache miss costs more than an add), so
both are reported; this one is the figure to compare builds of the filter with, and the
one that says where the instructions go (see bench/README.md).

Per configuration: Envoy (--concurrency 1) starts under callgrind with counting off;
after a warm-up, counting is switched on for --requests requests sent one after another on
one keep-alive connection (GET /api/v1/venues/v1, an HS256 token, a spoofed x-tenant-id,
as in filter_cost.py), dumped, and divided by the request count. Everything else on the
thread in that window (timers, stats flushes) is counted too; it is the same for every
configuration and cancels out of "added over plain".

Bounded: one gateway at a time, --requests requests each (default 2000), every wait with
a deadline. Needs valgrind (scripts/bootstrap.sh installs it).

Usage: bench/filter_instructions.py [--requests 2000] [--module LABEL=PATH] [--only plain,stagedoor,native]
                                    [--keep DIR] [--out bench/results-instructions.md]

--keep DIR leaves the configs, logs and callgrind dumps in DIR: `callgrind_annotate
DIR/<config>.callgrind.1` says which functions the instructions went to (wasm code shows up
as anonymous addresses above 4 GiB; Envoy's binary is stripped, so its functions show as
addresses too).
"""

import argparse
import contextlib
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import filter_cost as fc  # noqa: E402  (the configurations are defined once, there)

READY_TIMEOUT = 180  # Envoy compiling the wasm module under valgrind takes a while


def envoy_binary():
    """The real Envoy executable (the `envoy` on PATH may be a pyenv shim script)."""
    found = shutil.which("envoy")
    probe = subprocess.run([sys.executable, "-c", "import envoy, os; print(os.path.dirname(envoy.__file__))"],
                           capture_output=True, text=True)
    candidate = os.path.join(probe.stdout.strip(), "_bin", "envoy") if probe.returncode == 0 else ""
    return candidate if os.path.isfile(candidate) else found


# The request measured: GET /api/v1/venues/v1 unless --post PATH BODY_FILE (e.g. a ticket
# purchase on a route with a body schema, against the same route without one).
REQUEST = {"method": "GET", "path": "/api/v1/venues/v1", "body": None}


def send(port, token, n, deadline):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "x-tenant-id": "evil"}
    if REQUEST["body"] is not None:
        headers["Content-Type"] = "application/json"
    for _ in range(n):
        if time.time() > deadline:
            raise SystemExit("requests took too long")
        conn.request(REQUEST["method"], REQUEST["path"], body=REQUEST["body"], headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"gateway on {port} answered {response.status}; the configuration is wrong")
    conn.close()


def control(pid, *args):
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=60)


def instructions_per_request(name, yaml_text, workdir, port, token, requests):
    label = re.sub(r"\W+", "-", name.lower()).strip("-")
    config = os.path.join(workdir, f"{label}.yaml")
    with open(config, "w") as f:
        f.write(yaml_text)
    out = os.path.join(workdir, f"{label}.callgrind")
    log = open(os.path.join(workdir, f"{label}.log"), "w")
    envoy = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--instr-atstart=no",
         envoy_binary(), "-c", config, "--concurrency", "1", "--disable-hot-restart", "-l", "warning"],
        stdout=log, stderr=log)
    try:
        fc.wait_ok(port, token, timeout=READY_TIMEOUT)
        send(port, token, 300, time.time() + 300)  # warm: caches, connection, JIT
        control(envoy.pid, "--instr=on")
        send(port, token, requests, time.time() + 600)
        control(envoy.pid, "--dump")
        control(envoy.pid, "--instr=off")
    finally:
        envoy.terminate()
        envoy.wait(timeout=60)
    dumps = [f for f in os.listdir(workdir) if f.startswith(f"{label}.callgrind.")]
    if len(dumps) != 1:
        raise SystemExit(f"{name}: expected one callgrind dump, found {dumps}")
    with open(os.path.join(workdir, dumps[0])) as f:
        totals = re.search(r"^totals:\s+(\d+)", f.read(), re.M)
    return int(totals.group(1)) / requests


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--module", action="append", default=[], metavar="LABEL=PATH")
    ap.add_argument("--only", help="comma-separated first words of configs to run (plain,stagedoor,native)")
    ap.add_argument("--out", default=os.path.join(fc.ROOT, "bench/results-instructions.md"))
    ap.add_argument("--post", nargs=2, metavar=("PATH", "BODY_FILE"), help="measure POST PATH with this body instead")
    ap.add_argument("--role", default="venue-manager", help="the bench token's role (customer may purchase tickets)")
    ap.add_argument("--keep", metavar="DIR", help="keep configs, logs and callgrind dumps in DIR (created, must be empty)")
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: run scripts/bootstrap.sh")
    if args.post:
        with open(args.post[1], "rb") as f:
            REQUEST.update(method="POST", path=args.post[0], body=f.read())
    token = subprocess.run([fc.BIN, "token", "--registry", fc.REGISTRY, "--role", args.role, "--ttl", "4h"],
                           check=True, capture_output=True, text=True).stdout.strip()
    configs = fc.configurations(args.module, args.only)
    counts = {}
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        if os.listdir(args.keep):
            raise SystemExit(f"--keep {args.keep}: not empty")
    with (contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory(prefix="stagedoor-instr-")) as workdir:
        upstream_port = fc.free_port()
        upstream = fc.start_envoy(fc.UPSTREAM.format(admin=fc.free_port(), port=upstream_port), 1, workdir, "upstream")
        try:
            for name, filters in configs:
                port = fc.free_port()
                yaml_text = fc.gateway_yaml(filters, port, fc.free_port(), upstream_port)
                counts[name] = instructions_per_request(name, yaml_text, workdir, port, token, args.requests)
                print(f"{name}: {counts[name]:.0f} instructions/request", file=sys.stderr)
        finally:
            upstream.terminate()
            upstream.wait(timeout=10)
    plain = counts.get("plain Envoy")
    lines = [
        f"Envoy 1.40 under callgrind, --concurrency 1; {args.requests} {REQUEST['method']} {REQUEST['path']} "
        f"({len(REQUEST['body'] or b'')} body bytes) on one connection per configuration; "
        f"{time.strftime('%Y-%m-%d')} on {os.uname().nodename}.",
        "",
        "| Envoy with ... | instructions/req | added over plain |",
        "|---|---:|---:|",
    ]
    for name, count in counts.items():
        added = f"{count - plain:+.0f}" if plain else "n/a"
        lines.append(f"| {name} | {count:.0f} | {added} |")
    if plain:
        lines.append("")
        for native in (n for n in counts if n.startswith("native")):
            for name in (n for n in counts if n.startswith(fc.STAGEDOOR)):
                ratio = (counts[name] - plain) / (counts[native] - plain)
                lines.append(f"{name} / {native}: {ratio:.2f} (added instructions).")
    fc.write_report(lines, args.out)


if __name__ == "__main__":
    main()
