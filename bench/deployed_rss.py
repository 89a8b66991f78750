#!/usr/bin/env python3
"""Where Envoy's resident memory goes with the Stagedoor filter, for filter builds compared
side by side: the pushed config made static (from a `deployed_cost.py --keep DIR` run) with
the Stagedoor filter's module swapped for each build given, against plain Envoy and the wasm
floor, no valgrind.

Why: `deployed_cost.py` reads RSS once, after its CPU rounds, one Envoy per configuration on
a shared machine; a module-size change moves RSS by 1-4 MB, inside that reading's spread.
Here every configuration is started --rounds times, one after another (so two Envoys never
compile a module at the same moment), given --requests GETs with the bench's token on one
connection and then --settle seconds (the bootstrap's heap release runs every second), and
the medians are reported with Envoy's own /memory (allocated, heap size) and V8's VM count,
then where the RSS is: /proc/PID/smaps summed by kind of mapping (Envoy's binary, tcmalloc's
heap, V8's code space, the rest) and the heap split by tcmalloc's own /memory/tcmalloc
(in use, free in its page heap, in thread caches).

Usage: bench/deployed_rss.py KEEP_DIR LABEL=MODULE.wasm... [--rounds 3] [--requests 200] [--settle 15]
LABEL=floor:MODULE.wasm runs MODULE in the wasm floor's place instead (synthetic_functions.py).
KEEP_DIR is a `deployed_cost.py --keep` directory (its static config, TLS files and
registries; its upstream is started again on the same port, so run this after that run has
ended, and a control plane with its registry serves the revocation feed). Bounded: every
wait has a deadline; kills only what it started.
"""

import argparse
import copy
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deployed_cost as dc  # noqa: E402  (the static config's edits, workloads, tokens)
import filter_cost as fc  # noqa: E402
import filter_instructions as fi  # noqa: E402

STATIC = "the-pushed-config-static-identity-signing-on.json"


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1)) / 1024


def smaps_by_kind(pid):
    """RSS in MB by kind of mapping. tcmalloc's heap is the anonymous rw mapping holding more
    than 4 MB (Envoy's others are thread stacks and V8's isolate pages, each well under);
    V8's code space is anonymous and executable (the compiled wasm, shared by the VMs)."""
    kinds, kind = {}, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = re.match(r"^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \d+\s*(.*)$", line)
            if head:
                perms, path = head.group(1), head.group(2).strip()
                kind = ("envoy binary" if path.endswith("/envoy") else "other files" if path.startswith("/")
                        else "V8 code space" if not path and "x" in perms else "anonymous")
                continue
            rss = re.match(r"^Rss:\s+(\d+) kB", line)
            if rss and kind:
                mb = int(rss.group(1)) / 1024
                if kind == "anonymous" and mb > 4:
                    kinds["tcmalloc heap"] = kinds.get("tcmalloc heap", 0) + mb
                else:
                    kinds[kind] = kinds.get(kind, 0) + mb
    return kinds


def tcmalloc_split(text):
    """tcmalloc's own account of its heap (MB): in use, free in the page heap, in thread caches."""
    def field(label):
        m = re.search(r"MALLOC:\s+\+?\s*(\d+) \(.*\) " + label, text)
        return int(m.group(1)) / 2**20 if m else 0.0
    return {"in use": field("Bytes in use by application"), "page heap free": field("Bytes in page heap freelist"),
            "thread caches": field("Bytes in thread cache freelists")}


def admin_json(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def measure(config, workdir, name, token, requests, settle):
    port, admin = fc.free_port(), fc.free_port()
    config = copy.deepcopy(config)
    dc.set_ports(config, port, admin)
    path = os.path.join(workdir, f"rss-{name}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    envoy = subprocess.Popen([fi.envoy_binary(), "-c", path, "--concurrency", "1", "--disable-hot-restart",
                              "-l", "warning", "--drain-time-s", "1"],
                             stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, f"rss-{name}.log"), "w"))
    try:
        workload = dc.Workload("200", dc.PATH_OK, lambda i: token, 200)
        dc.wait_answer(port, workload, 120, envoy)
        dc.send(port, workload, requests, time.time() + 120)
        time.sleep(settle)
        memory = json.loads(admin_json(admin, "/memory"))
        kinds = smaps_by_kind(envoy.pid)
        heap = tcmalloc_split(admin_json(admin, "/memory/tcmalloc"))
        stats = admin_json(admin, "/stats?filter=wasm.envoy.wasm.runtime.v8.active")
        vms = re.search(r"active: (\d+)", stats)
        return {"rss": rss_mb(envoy.pid), "allocated": int(memory["allocated"]) / 2**20,
                "heap": int(memory["heap_size"]) / 2**20, "vms": int(vms.group(1)) if vms else 0,
                **{f"map {k}": v for k, v in kinds.items()}, **{f"heap {k}": v for k, v in heap.items()}}
    finally:
        envoy.terminate()
        envoy.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("keep")
    ap.add_argument("builds", nargs="+", metavar="LABEL=MODULE")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--settle", type=int, default=15)
    args = ap.parse_args()
    with open(os.path.join(args.keep, STATIC)) as f:
        static = json.load(f)
    with open(os.path.join(args.keep, "upstream.yaml")) as f:
        upstream_yaml = f.read()
    # The static config's cluster names the kept run's upstream port: the same upstream is
    # started again there (so run this after that run has ended).
    upstream_port = yaml.safe_load(upstream_yaml)["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
    configs = {"plain Envoy": yaml.safe_load(fc.gateway_yaml("", 0, 0, upstream_port))}
    floor = copy.deepcopy(static)
    dc.replace_stagedoor_filter(floor, dc.floor_filter(floor))
    configs["wasm floor"] = floor
    for build in args.builds:
        label, _, module = build.partition("=")
        config = copy.deepcopy(static)
        if module.startswith("floor:"):
            # The wasm floor's filter config with another module (synthetic_functions.py).
            dc.replace_stagedoor_filter(config, dc.floor_filter(config))
            dc.swap_module(config, module.removeprefix("floor:"), name="floor")
        else:
            dc.swap_module(config, module)
        configs[label] = config
    results = {name: [] for name in configs}
    processes = []
    try:
        # The filter holds requests until it has the revocation list: a control plane serves
        # it again, the static config's control-plane cluster pointed at it.
        cp = dc.ControlPlane(args.keep, "rss", os.path.join(args.keep, "registry-key.yaml"), os.path.join(args.keep, "tls"),
                             processes)
        for config in configs.values():
            for cluster in config["static_resources"]["clusters"]:
                if cluster["name"] == "stagedoor_control_plane":
                    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
                    endpoint["address"]["socket_address"]["port_value"] = cp.http
        token = dc.stagedoor("token", "--registry", os.path.join(args.keep, "registry-key.yaml"), "--role", "venue-manager",
                             "--venues", "v1,v2", "--ttl", "4h")
        processes.append(fc.start_envoy(upstream_yaml, 1, args.keep, "rss-upstream"))
        for _ in range(args.rounds):
            for name, config in configs.items():
                label = re.sub(r"\W+", "-", name.lower()).strip("-")
                results[name].append(measure(config, args.keep, label, token, args.requests, args.settle))
                print(f"{name}: {results[name][-1]}", file=sys.stderr)
    finally:
        for p in processes:
            p.terminate()
            p.wait(timeout=30)
    plain_rss = statistics.median(r["rss"] for r in results["plain Envoy"])
    print(f"| Envoy with ... | RSS MB (median of {args.rounds}) | over plain | heap allocated MB | heap size MB | V8 VMs |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in ("rss", "allocated", "heap", "vms")}
        print(f"| {name} | {med['rss']:.1f} | {med['rss'] - plain_rss:+.1f} | {med['allocated']:.1f} | {med['heap']:.1f} | "
              f"{med['vms']:.0f} |")
    columns = ["map envoy binary", "map tcmalloc heap", "map V8 code space", "map anonymous", "map other files",
               "heap in use", "heap page heap free", "heap thread caches"]
    print()
    print(f"RSS by mapping (smaps, MB, medians of {args.rounds}) and tcmalloc's heap by state (/memory/tcmalloc, MB):")
    print()
    print("| Envoy with ... | " + " | ".join(c.removeprefix("map ").removeprefix("heap ") for c in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, runs in results.items():
        cells = [statistics.median(r.get(c, 0.0) for r in runs) for c in columns]
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in cells) + " |")



if __name__ == "__main__":
    main()
