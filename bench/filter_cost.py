#!/usr/bin/env python3
"""What the Stagedoor filter costs Envoy, against plain Envoy and Envoy's native
jwt_authn + rbac + header_mutation (JWT cache on), in one run on this machine.

Each configuration: one Envoy (--concurrency 1) pinned to core 0; the upstream (a second
Envoy answering 200 directly) and wrk pinned to core 1. Envoy's CPU time per request is
utime+stime from /proc/<pid>/stat over the run divided by the requests wrk completed.
Workload: GET /api/v1/venues/v1 with one HS256 bearer token (so both caches hit) and a
spoofed x-tenant-id that must be replaced. Medians over --reps repetitions; ratios are
against plain Envoy measured in the same run. Bounded: each run lasts --seconds.

Usage: bench/filter_cost.py [--seconds 10] [--reps 3] [--out bench/results-filter.md]
"""

import argparse
import base64
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/debug/stagedoor")
WASM = os.environ.get("STAGEDOOR_WASM", os.path.join(ROOT, "target/wasm32-wasip1/release/stagedoor_filter.wasm"))
REGISTRY = os.environ.get("STAGEDOOR_BENCH_REGISTRY", os.path.join(ROOT, "registry/tickettoken.yaml"))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HCM_COMMON = """
                stat_prefix: bench
                normalize_path: true
                merge_slashes: true
                path_with_escaped_slashes_action: REJECT_REQUEST
                use_remote_address: true
                internal_address_config: {{}}
                common_http_protocol_options: {{ headers_with_underscores_action: DROP_HEADER }}
                route_config:
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      request_headers_to_add:
                        - header: {{ key: x-gateway-forwarded, value: "true" }}
                          append_action: OVERWRITE_IF_EXISTS_OR_ADD
                        - header: {{ key: x-original-ip, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" }}
                          append_action: OVERWRITE_IF_EXISTS_OR_ADD
                      routes: [{{ match: {{ prefix: / }}, route: {{ cluster: upstream }} }}]
                http_filters:
{filters}
                  - name: envoy.filters.http.router
                    typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"""

BOOTSTRAP = """
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
static_resources:
  listeners:
    - name: gateway
      address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
{hcm}
  clusters:
    - name: upstream
      type: STATIC
      connect_timeout: 1s
      load_assignment:
        cluster_name: upstream
        endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {upstream} }} }} }} }}] }}]
"""

UPSTREAM = """
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
static_resources:
  listeners:
    - name: upstream
      address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: upstream
                route_config: {{ virtual_hosts: [{{ name: all, domains: ["*"], routes: [{{ match: {{ prefix: / }}, direct_response: {{ status: 200, body: {{ inline_string: ok }} }} }}] }}] }}
                http_filters: [{{ name: envoy.filters.http.router, typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }} }}]
"""


# Both gateways strip internal headers from responses; Stagedoor does it with this native
# filter (the control plane adds it after the wasm filter), so the native setup gets it too.
RESPONSE_STRIP = """
                  - name: envoy.filters.http.header_mutation
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
                      mutations:
                        response_mutations:
                          - remove_on_match: { key_matcher: { prefix: x-internal-, ignore_case: true } }
                          - remove: www-authenticate"""


def stagedoor_filters():
    config = subprocess.run([BIN, "filter-config", "--registry", REGISTRY], check=True, capture_output=True, text=True).stdout.strip()
    return f"""                  - name: envoy.filters.http.wasm
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config:
                        name: stagedoor
                        root_id: stagedoor
                        vm_config:
                          vm_id: stagedoor
                          runtime: envoy.wasm.runtime.v8
                          code: {{ local: {{ filename: {WASM} }} }}
                        configuration:
                          "@type": type.googleapis.com/google.protobuf.StringValue
                          value: {json.dumps(config)}""" + RESPONSE_STRIP


def native_filters(secret):
    k = base64.urlsafe_b64encode(secret.encode()).decode().rstrip("=")
    jwks = json.dumps({"keys": [{"kty": "oct", "alg": "HS256", "k": k}]})
    removes = "\n".join(
        f"                          - remove: {h}"
        for h in ["x-tenant-id", "x-tenant-source", "x-user-id", "x-user-role", "x-user-permissions", "x-venue-ids"]
    )
    return f"""                  - name: envoy.filters.http.header_mutation
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
                      mutations:
                        request_mutations:
{removes}
                  - name: envoy.filters.http.jwt_authn
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
                      providers:
                        tt:
                          issuer: tickettoken
                          audiences: [tickettoken-platform]
                          local_jwks: {{ inline_string: {json.dumps(jwks)} }}
                          forward: true
                          clock_skew_seconds: 30
                          payload_in_metadata: jwt_payload
                          jwt_cache_config: {{ jwt_cache_size: 1000 }}
                          claim_to_headers:
                            - {{ header_name: x-tenant-id, claim_name: tenant_id }}
                            - {{ header_name: x-user-id, claim_name: sub }}
                            - {{ header_name: x-user-role, claim_name: role }}
                      rules: [{{ match: {{ prefix: /api/ }}, requires: {{ provider_name: tt }} }}]
                  - name: envoy.filters.http.rbac
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
                      rules:
                        action: ALLOW
                        policies:
                          access-token-with-tenant:
                            permissions: [{{ any: true }}]
                            principals:
                              - and_ids:
                                  ids:
                                    - metadata: {{ filter: envoy.filters.http.jwt_authn, path: [{{ key: jwt_payload }}, {{ key: type }}], value: {{ string_match: {{ exact: access }} }} }}
                                    - metadata: {{ filter: envoy.filters.http.jwt_authn, path: [{{ key: jwt_payload }}, {{ key: tenant_id }}], value: {{ string_match: {{ safe_regex: {{ regex: ".+" }} }} }} }}""" + RESPONSE_STRIP


def start_envoy(yaml_text, cpu, workdir, name):
    path = os.path.join(workdir, f"{name}.yaml")
    with open(path, "w") as f:
        f.write(yaml_text)
    log = open(os.path.join(workdir, f"{name}.log"), "w")
    return subprocess.Popen(
        ["taskset", "-c", str(cpu), "envoy", "-c", path, "--concurrency", "1", "--disable-hot-restart", "-l", "warning"],
        stdout=subprocess.DEVNULL, stderr=log,
    )


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def wait_ok(port, token, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = subprocess.run(
            ["curl", "--noproxy", "*", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Authorization: Bearer {token}",
             f"http://127.0.0.1:{port}/api/v1/venues/v1"], capture_output=True, text=True)
        if r.stdout == "200":
            return
        time.sleep(0.2)
    raise SystemExit(f"gateway on {port} never answered 200")


def parse_latency(text, label):
    m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 1, "ms": 1000, "s": 1_000_000}[unit]


def run_once(name, filters, seconds, token, workdir):
    upstream_port, gw_port = free_port(), free_port()
    upstream = start_envoy(UPSTREAM.format(admin=free_port(), port=upstream_port), 1, workdir, f"{name}-upstream")
    gateway = start_envoy(
        BOOTSTRAP.format(admin=free_port(), port=gw_port, upstream=upstream_port, hcm=HCM_COMMON.format(filters=filters)),
        0, workdir, name)
    try:
        wait_ok(gw_port, token)
        # Warm up (caches, connections), then measure.
        subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c32", "-d2s", "-H", f"Authorization: Bearer {token}",
                        "-H", "x-tenant-id: evil", f"http://127.0.0.1:{gw_port}/api/v1/venues/v1"], capture_output=True, check=True)
        before = cpu_ticks(gateway.pid)
        out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{seconds}s", "--latency",
                              "-H", f"Authorization: Bearer {token}", "-H", "x-tenant-id: evil",
                              f"http://127.0.0.1:{gw_port}/api/v1/venues/v1"], capture_output=True, text=True, check=True).stdout
        after = cpu_ticks(gateway.pid)
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if non2xx:
            raise SystemExit(f"{name}: {non2xx.group(1)} non-2xx responses; the configuration is wrong")
        return {
            "cpu_us": (after - before) * 1_000_000 / CLK_TCK / requests,
            "rps": requests / seconds,
            "p50": parse_latency(out, "50%"),
            "p99": parse_latency(out, "99%"),
        }
    finally:
        for p in (gateway, upstream):
            p.terminate()
            p.wait(timeout=10)


def registry_secret():
    text = open(REGISTRY).read()
    return re.search(r"secret: (\S+)", text).group(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results-filter.md"))
    ap.add_argument("--only", help="comma-separated first words of configs to run (plain,stagedoor,native)")
    args = ap.parse_args()
    token = subprocess.run([BIN, "token", "--registry", REGISTRY, "--role", "venue-manager", "--venues", "v1,v2", "--ttl", "1h"],
                           check=True, capture_output=True, text=True).stdout.strip()
    configs = [
        ("plain Envoy", ""),
        ("Stagedoor filter", stagedoor_filters()),
        ("native jwt_authn + rbac + header_mutation (JWT cache on)", native_filters(registry_secret())),
    ]
    if args.only:
        wanted = args.only.split(",")
        configs = [c for c in configs if c[0].split()[0].lower() in wanted]
    results = {name: [] for name, _ in configs}
    with tempfile.TemporaryDirectory(prefix="stagedoor-bench-") as workdir:
        for rep in range(args.reps):
            for name, filters in configs:  # interleaved, so drift hits every config alike
                r = run_once(name.split()[0].lower(), filters, args.seconds, token, workdir)
                results[name].append(r)
                print(f"rep {rep + 1} {name}: {r['cpu_us']:.1f} µs/req, {r['rps']:.0f} rps", file=sys.stderr)
    med = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in results.items()}
    if "plain Envoy" not in med:
        print(json.dumps(med, indent=1))
        return
    plain = med["plain Envoy"]
    lines = [
        f"Envoy 1.40, --concurrency 1 on one core; wrk -t1 -c32, {args.seconds} s x {args.reps} reps (medians), "
        f"{time.strftime('%Y-%m-%d')} on {os.uname().nodename}, {os.cpu_count()} cores.",
        "",
        "| Envoy with ... | CPU µs/req | added over plain | CPU x plain | rps | rps x plain | p50 µs | p99 µs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in med.items():
        lines.append(
            f"| {name} | {m['cpu_us']:.1f} | {m['cpu_us'] - plain['cpu_us']:+.1f} | {m['cpu_us'] / plain['cpu_us']:.2f} | "
            f"{m['rps']:.0f} | {m['rps'] / plain['rps']:.2f} | {m['p50']:.0f} | {m['p99']:.0f} |")
    native_name = "native jwt_authn + rbac + header_mutation (JWT cache on)"
    if "Stagedoor filter" in med and native_name in med:
        sd = med["Stagedoor filter"]["cpu_us"] - plain["cpu_us"]
        nat = med[native_name]["cpu_us"] - plain["cpu_us"]
        lines += ["", f"Stagedoor adds {sd:.1f} µs/req; the native pair adds {nat:.1f} µs/req "
                  f"(Stagedoor / native added cost = {sd / nat:.2f})." if nat > 0 else ""]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
