#!/usr/bin/env python3
"""What the Stagedoor filter costs Envoy, against plain Envoy and Envoy's native
jwt_authn + rbac + header_mutation (JWT cache on), in one run on this machine.

Each configuration is one Envoy (--concurrency 1) pinned to core 0; the upstream (a further
Envoy answering 200 directly) and one wrk per configuration are pinned to core 1. By
default every configuration is loaded at the same time for each burst: they share core 0,
so whatever the machine does during a burst (these VMs drift by a third within seconds) it
does to all of them, and the ratios hold steady while the absolute figures sit above what
a lone Envoy shows (the configurations also share the CPU caches). --rotate loads one at a
time instead, rotating short bursts. Envoy's CPU time per request is utime+stime from
/proc/<pid>/stat over a burst divided by the requests wrk completed in it; the added cost
of a configuration is taken against plain Envoy in the same round, then the median.
Workload: GET /api/v1/venues/v1 with one HS256 bearer token (so both caches hit) and a
spoofed x-tenant-id that must be replaced. Bounded: rounds x configurations bursts.

Usage: bench/filter_cost.py [--seconds 4] [--rounds 10] [--rotate] [--module LABEL=PATH] [--out bench/results-filter.md]
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


def header_mutation(kind, mutations):
    """An envoy.filters.http.header_mutation filter; kind is request or response."""
    lines = "\n".join(f"                          - {m}" for m in mutations)
    return f"""
                  - name: envoy.filters.http.header_mutation
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
                      mutations:
                        {kind}_mutations:
{lines}"""


# Both gateways strip internal headers from responses; Stagedoor does it with this native
# filter (the control plane adds it after the wasm filter), so the native setup gets it too.
RESPONSE_STRIP = header_mutation("response", ["remove_on_match: { key_matcher: { prefix: x-internal-, ignore_case: true } }",
                                              "remove: www-authenticate"])


def stagedoor_filters(wasm=WASM, statement=True):
    """The wasm filter with the config the control plane renders for REGISTRY; without
    `statement`, the same config minus the identity-signing key (no x-stagedoor-identity:
    the output the native configurations can match)."""
    config = on_registry("filter-config", "--registry", REGISTRY)
    if not statement:
        parsed = json.loads(config)
        parsed.pop("identity_signing_key", None)
        config = json.dumps(parsed)
    return f"""                  - name: envoy.filters.http.wasm
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config:
                        name: stagedoor
                        root_id: stagedoor
                        # As the control plane pushes it (translate/extension_config.rs): a
                        # request held at its headers still gets its body (webhooks, validation).
                        allow_on_headers_stop_iteration: true
                        vm_config:
                          vm_id: stagedoor
                          runtime: envoy.wasm.runtime.v8
                          code: {{ local: {{ filename: {wasm} }} }}
                        configuration:
                          "@type": type.googleapis.com/google.protobuf.StringValue
                          value: {json.dumps(config)}""" + RESPONSE_STRIP


# Stagedoor's block list (filter/core/src/defaults.rs), for the native configuration that
# strips what Stagedoor strips.
IDENTITY_HEADERS = ["x-tenant-id", "x-tenant-source", "x-user-id", "x-user-role", "x-user-permissions", "x-venue-ids",
                    "x-stagedoor-identity"]
BLOCKED_HEADERS = ["x-internal-service", "x-internal-signature", "x-internal-key", "x-admin-token", "x-privileged",
                   "x-forwarded-host", "x-real-ip", "proxy-authenticate", "proxy-authorization", "www-authenticate",
                   "x-http-method-override", "x-http-method", "x-method-override", "x-original-url", "x-rewrite-url",
                   "x-original-ip", "x-gateway-forwarded"]


def native_filters(secret, parity=False):
    """Envoy's own filters. Minimal: the six identity headers removed, three claims to
    headers, the two RBAC checks. Parity: also every check and header Stagedoor does that
    Envoy's filters can express: the whole block list and x-internal-* removed, the venues
    claim as x-venue-ids, x-tenant-source added. Not expressible natively, so in neither:
    the per-service allow-list, route rules, venue scope, revocation, the signed statement."""
    k = base64.urlsafe_b64encode(secret.encode()).decode().rstrip("=")
    jwks = json.dumps({"keys": [{"kty": "oct", "alg": "HS256", "k": k}]})
    removed = IDENTITY_HEADERS + BLOCKED_HEADERS if parity else IDENTITY_HEADERS[:6]
    removes = [f"remove: {h}" for h in removed]
    if parity:
        removes.append("remove_on_match: { key_matcher: { prefix: x-internal-, ignore_case: true } }")
    claims = [("x-tenant-id", "tenant_id"), ("x-user-id", "sub"), ("x-user-role", "role")]
    if parity:
        claims += [("x-venue-ids", "venues"), ("x-user-permissions", "permissions")]
    claim_lines = "\n".join(f"                            - {{ header_name: {h}, claim_name: {c} }}" for h, c in claims)
    tenant_source = header_mutation("request", [
        "append: { header: { key: x-tenant-source, value: jwt }, append_action: OVERWRITE_IF_EXISTS_OR_ADD }"]) if parity else ""
    return header_mutation("request", removes).lstrip("\n") + f"""
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
{claim_lines}
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
                                    - metadata: {{ filter: envoy.filters.http.jwt_authn, path: [{{ key: jwt_payload }}, {{ key: tenant_id }}], value: {{ string_match: {{ safe_regex: {{ regex: ".+" }} }} }} }}""" + tenant_source + RESPONSE_STRIP


STAGEDOOR = "Stagedoor filter"
NO_STATEMENT = "Stagedoor filter, no signed statement"
NATIVE = "native jwt_authn + rbac + header_mutation (JWT cache on)"
PARITY = "native, parity (also the block list, x-internal-*, venues, x-tenant-source)"


def configurations(modules=(), only=None):
    """(name, http filters) of every configuration measured; `modules` adds builds of the
    filter (LABEL=PATH), `only` keeps those whose first word is listed (plain,stagedoor,native)."""
    configs = [
        ("plain Envoy", ""),
        (STAGEDOOR, stagedoor_filters()),
        (NO_STATEMENT, stagedoor_filters(statement=False)),
        (NATIVE, native_filters(registry_secret())),
        (PARITY, native_filters(registry_secret(), parity=True)),
    ]
    for module in modules:
        label, path = module.split("=", 1)
        configs.insert(2, (f"{STAGEDOOR} ({label})", stagedoor_filters(os.path.abspath(path))))
    if only:
        wanted = only.split(",")
        configs = [c for c in configs if c[0].split()[0].lower() in wanted]
    return configs


def gateway_yaml(filters, port, admin, upstream):
    return BOOTSTRAP.format(admin=admin, port=port, upstream=upstream, hcm=HCM_COMMON.format(filters=filters))


def bench_token(ttl="1h"):
    return on_registry("token", "--registry", REGISTRY, "--role", "venue-manager", "--venues", "v1,v2", "--ttl", ttl)


def on_registry(*args):
    """`stagedoor <args>` from the repository root: the shipped registry's edge_tls names
    .stagedoor/edge.pem relative to the working directory, as scripts/run.sh runs it, and
    reading the registry checks it (`certs init` writes it once, then keeps it)."""
    subprocess.run([BIN, "certs", "init", "--dir", os.path.join(ROOT, ".stagedoor")], check=True, capture_output=True)
    return subprocess.run([BIN, *args], check=True, capture_output=True, text=True, cwd=ROOT).stdout.strip()


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


def wrk_command(port, seconds, token):
    return ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", "-H", f"Authorization: Bearer {token}",
            "-H", "x-tenant-id: evil", f"http://127.0.0.1:{port}/api/v1/venues/v1"]


def wrk(port, seconds, token):
    return subprocess.run(wrk_command(port, seconds, token), capture_output=True, text=True, check=True).stdout


def wrk_start(port, seconds, token):
    return subprocess.Popen(wrk_command(port, seconds, token), stdout=subprocess.PIPE, text=True)


def summarize(name, out, ticks, seconds):
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{name}: {non2xx.group(1)} non-2xx responses; the configuration is wrong")
    return {
        "cpu_us": ticks * 1_000_000 / CLK_TCK / requests,
        "rps": requests / seconds,
        "p50": parse_latency(out, "50%"),
        "p99": parse_latency(out, "99%"),
    }


def together(gateways, seconds, token):
    """One burst against the given gateways at once (all of them by default: they share
    core 0, so whatever the machine does during the burst it does to all of them)."""
    before = [cpu_ticks(g.pid) for _, g, _ in gateways]
    loads = [wrk_start(port, seconds, token) for _, _, port in gateways]
    outs = [load.communicate()[0] for load in loads]
    after = [cpu_ticks(g.pid) for _, g, _ in gateways]
    return [summarize(name, out, a - b, seconds) for (name, _, _), out, a, b in zip(gateways, outs, after, before)]


def registry_secret():
    text = open(REGISTRY).read()
    return re.search(r"secret: (\S+)", text).group(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=4, help="length of one measured burst")
    ap.add_argument("--rounds", type=int, default=10, help="bursts per configuration")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/results-filter.md"))
    ap.add_argument("--only", help="comma-separated first words of configs to run (plain,stagedoor,native)")
    ap.add_argument("--rotate", action="store_true",
                    help="load one configuration at a time, rotating bursts (closer to a lone Envoy, far noisier here)")
    ap.add_argument("--module", action="append", default=[], metavar="LABEL=PATH",
                    help="also run the Stagedoor filter built as PATH (e.g. an earlier build), labelled LABEL")
    args = ap.parse_args()
    token = bench_token()
    configs = configurations(args.module, args.only)
    results = {name: [] for name, _ in configs}
    processes = []
    with tempfile.TemporaryDirectory(prefix="stagedoor-bench-") as workdir:
        try:
            upstream_port = free_port()
            processes.append(start_envoy(UPSTREAM.format(admin=free_port(), port=upstream_port), 1, workdir, "upstream"))
            gateways = []
            for name, filters in configs:
                port = free_port()
                label = re.sub(r"\W+", "-", name.lower()).strip("-")
                yaml_text = gateway_yaml(filters, port, free_port(), upstream_port)
                gateway = start_envoy(yaml_text, 0, workdir, label)
                processes.append(gateway)
                gateways.append((name, gateway, port))
            for name, gateway, port in gateways:
                wait_ok(port, token)
                wrk(port, 2, token)  # warm up: caches, connections, JIT
            # Default: every gateway loaded at once, so whatever the machine does during a
            # burst it does to all of them. --rotate: one at a time, bursts rotating.
            for round_no in range(args.rounds):
                shift = round_no % len(gateways)
                rotated = gateways[shift:] + gateways[:shift]
                groups = [[g] for g in rotated] if args.rotate else [gateways]
                for group in groups:
                    for (name, _, _), r in zip(group, together(group, args.seconds, token)):
                        results[name].append(r)
                        print(f"round {round_no + 1} {name}: {r['cpu_us']:.1f} µs/req, {r['rps']:.0f} rps", file=sys.stderr)
        finally:
            for p in processes:
                p.terminate()
                p.wait(timeout=10)
    med = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in results.items()}
    if "plain Envoy" not in med:
        print(json.dumps(med, indent=1))
        return
    plain = med["plain Envoy"]
    # Added cost is paired by round (each configuration against plain Envoy measured
    # moments apart), then the median over rounds is taken.
    added = {name: [r["cpu_us"] - p["cpu_us"] for r, p in zip(runs, results["plain Envoy"])] for name, runs in results.items()}
    lines = [
        f"Envoy 1.40, --concurrency 1, every Envoy on core 0; wrk -t1 -c32 per Envoy; {args.rounds} rounds of "
        f"{args.seconds} s bursts, " + ("one Envoy at a time, rotated" if args.rotate else "all Envoys loaded at once")
        + f" (medians); {time.strftime('%Y-%m-%d')} on {os.uname().nodename}, {os.cpu_count()} cores.",
        "",
        "| Envoy with ... | CPU µs/req | added over plain | CPU x plain | rps | rps x plain | p50 µs | p99 µs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in med.items():
        lines.append(
            f"| {name} | {m['cpu_us']:.1f} | {statistics.median(added[name]):+.1f} | {m['cpu_us'] / plain['cpu_us']:.2f} | "
            f"{m['rps']:.0f} | {m['rps'] / plain['rps']:.2f} | {m['p50']:.0f} | {m['p99']:.0f} |")
    for native_name in (n for n in med if n.startswith("native")):
        lines.append("")
        nat = statistics.median(added[native_name])
        for name in (n for n in med if n.startswith(STAGEDOOR)):
            ratios = sorted(a / b for a, b in zip(added[name], added[native_name]) if b > 0)
            if not ratios:
                continue
            quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
            lines.append(
                f"{name} adds {statistics.median(added[name]):.1f} µs/req; {native_name} adds {nat:.1f} µs/req "
                f"(ratio per round: median {statistics.median(ratios):.2f}, middle half {quartiles[0]:.2f}-{quartiles[2]:.2f}).")
    write_report(lines, args.out)


def write_report(lines, path):
    """Prints the report and writes it to `path`."""
    text = "\n".join(lines) + "\n"
    print(text)
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
