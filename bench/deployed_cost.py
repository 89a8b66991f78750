#!/usr/bin/env python3
"""What Stagedoor costs Envoy as it is deployed: `stagedoor serve` feeding an Envoy 1.40 over
ADS (mutual TLS, envoy/bootstrap.yaml), against plain Envoy and against native Envoy doing the
same checks with the same traffic policy, all in one run. Then a breakdown: the config the
control plane pushed, taken from that Envoy's /config_dump, replayed as static configs with one
element removed at a time.

Why: filter_cost.py and filter_instructions.py price the filter inside a hand-written static
config. Users run what the control plane pushes: its connection manager options, the wasm
filter over ECDS, the response header_mutation, local-reply mappers, three routes per prefix
with retry policies and metadata, clusters with outlier detection, circuit breakers and health
checks. This prices that, and says which element costs what.

Setup: a bench registry of one service (`venue`, prefix /api/v1/venues, one rule) whose one
instance is an upstream Envoy answering 200 itself; two control planes (`target/debug/stagedoor
serve`: only Envoy's instructions are counted, the control plane's speed does not enter), one
with the identity-signing key and one without; every Envoy runs --concurrency 1.

Instructions (callgrind, as filter_instructions.py): Envoy starts under callgrind with counting
off; per workload, 300 warm-up requests, then counting on for --requests requests one after
another on one keep-alive connection, dumped, divided. Workloads: GET /api/v1/venues/v1 with an
HS256 token and a spoofed x-tenant-id (200); the same with a bad signature (401); a request
refused after the token checks (403: Stagedoor, a venue outside the token's venues; native,
a token whose `type` is not `access`, refused by rbac); a cold token (a token never seen
before on every request: signature verified, cache filled).

Configurations: plain Envoy (filter_cost.py's static proxy to the same upstream); Stagedoor
over ADS, with and without the identity key; the pushed config made static (must match the ADS
figure: the check that the breakdown starts from what was deployed); native: the same static
config with the Stagedoor filter replaced by filter_cost.py's jwt_authn (JWT cache on) + rbac +
request header_mutation, so it has the same routes, retries, outlier detection, circuit
breakers, response header stripping, request id in responses and the two added request
headers; the wasm floor (bench/wasm_floor: an empty filter that reads the header map once) in
the Stagedoor filter's place; then the breakdown variants.

CPU time (as filter_cost.py, paired rounds, all Envoys on core 0 loaded at once, wrk on core
1): plain, native, Stagedoor over ADS with and without the identity key; and Envoy's RSS
after the rounds.

Bounded: --rounds x --seconds CPU bursts; --requests per callgrind workload; every wait has a
deadline. Needs valgrind, wrk, taskset. Kills only what it started.

Before and after: --before DIR runs an earlier build (DIR/stagedoor, DIR/stagedoor_filter.wasm,
DIR/bootstrap.yaml) as a third control plane and Envoy, identity signing on; repeated
(--before DIR=LABEL, LABEL naming the row) it runs several builds, e.g. the filter built two
ways. The "cut undone" breakdown rows undo one cut of issue 18 each in the static config; the
"refusals" rows price the local-reply mappers on the 401 and the 403, the only workloads that
reach them.

Usage: bench/deployed_cost.py [--requests 2000] [--rounds 7] [--seconds 3] [--jobs 2]
                              [--no-breakdown] [--no-cpu] [--before DIR[=LABEL]]... [--variants REGEX]
                              [--keep DIR] [--out bench/results-deployed.md]
"""

import argparse
import base64
import concurrent.futures
import contextlib
import copy
import hashlib
import hmac
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import filter_cost as fc  # noqa: E402  (helpers: ports, upstream, native filters, wrk rounds)
import filter_instructions as fi  # noqa: E402  (the callgrind harness: Envoy binary, callgrind_control)

IDLE_SECONDS = 10  # the idle window that prices the timers (see callgrind())
READY_TIMEOUT = 420  # Envoy compiling the 1 MB module under valgrind, next to other builds
WARM_REQUESTS = 300
FLOOR_DIR = os.path.join(fc.ROOT, "bench/wasm_floor")
FLOOR_WASM = "/tmp/stagedoor-wasm-floor-target/wasm32-wasip1/release/stagedoor_wasm_floor.wasm"
SECRET = "stagedoor-dev-secret-change-me-0123456789"
IDENTITY_KEY = "stagedoor-dev-identity-key-change-me-0123456789"
PATH_OK = "/api/v1/venues/v1"
PATH_FORBIDDEN = "/api/v1/venues/v9/reports"  # a venue outside the token's v1,v2

REGISTRY = """auth:
  issuer: tickettoken
  audience: tickettoken-platform
  leeway_secs: 30
  keys:
    - algorithms: [HS256]
      secret: {secret}
      dev: true
{identity}services:
  - name: venue
    routes:
      - prefix: /api/v1/venues
    instances:
      - address: 127.0.0.1
        port: {upstream}
    rules:
      - {{ method: GET, path: "/api/v1/venues/{{venueId}}/reports", permission: reports:view }}
"""


def write_registry(workdir, name, upstream_port, identity):
    path = os.path.join(workdir, f"registry-{name}.yaml")
    block = f"identity:\n  signing_key: {IDENTITY_KEY}\n" if identity else ""
    with open(path, "w") as f:
        f.write(REGISTRY.format(secret=SECRET, identity=block, upstream=upstream_port))
    return path


def stagedoor(*args):
    return subprocess.run([fc.BIN, *args], check=True, capture_output=True, text=True, timeout=60).stdout.strip()


# --- tokens -----------------------------------------------------------------------------

def b64(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def sign(header_payload, key):
    return header_payload + "." + b64(hmac.new(key.encode(), header_payload.encode(), hashlib.sha256).digest())


def with_jti(token, jti):
    """The token with its `jti` replaced and signed again: a token no cache has seen."""
    header, payload, _ = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["jti"] = jti
    return sign(header + "." + b64(json.dumps(claims, separators=(",", ":")).encode()), SECRET)


def bad_signature(token):
    header, payload, _ = token.split(".")
    return sign(header + "." + payload, SECRET + "-wrong")


# --- workloads --------------------------------------------------------------------------

class Workload:
    """Requests of one kind: path, the token for request i, and the status every answer must have."""

    def __init__(self, name, path, token_for, status):
        self.name, self.path, self.token_for, self.status = name, path, token_for, status


def workloads(tokens, forbidden):
    hot = tokens["hot"]
    cold_counter = iter(range(10**9))
    return [
        Workload("200", PATH_OK, lambda i: hot, 200),
        Workload("401 bad signature", PATH_OK, lambda i: tokens["bad"], 401),
        forbidden,
        Workload("cold token", PATH_OK, lambda i: with_jti(hot, f"cold{next(cold_counter):012d}"), 200),
    ]


def send(port, workload, n, deadline):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for i in range(n):
            if time.time() > deadline:
                raise SystemExit(f"{workload.name}: requests took too long")
            headers = {"Authorization": f"Bearer {workload.token_for(i)}", "x-tenant-id": "evil"}
            conn.request("GET", workload.path, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != workload.status:
                raise SystemExit(f"gateway on {port}: {workload.name} answered {response.status}, "
                                 f"expected {workload.status}; the configuration is wrong")
    finally:
        conn.close()


def wait_answer(port, workload, timeout, envoy):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if envoy.poll() is not None:
            raise SystemExit(f"Envoy on {port} exited ({envoy.returncode}) before it answered")
        try:
            send(port, workload, 1, deadline)
            return
        except (OSError, http.client.HTTPException, SystemExit) as e:
            last = e
            time.sleep(1)
    raise SystemExit(f"gateway on {port} never answered {workload.status}: {last}")


def callgrind(label, config_path, workdir, port, runs, requests, admin_port=None):
    """Envoy under callgrind, counting off; per workload: warm up, count --requests, dump;
    then IDLE_SECONDS counted with no requests, dumped.

    Why the idle window: some of what Envoy runs is paid per second, not per request (the
    filter's 250 ms tick and its revocation poll over mTLS, the ADS stream, stats flushes),
    and under callgrind a request takes milliseconds, so that share moves with how loaded
    the machine is. Returns ({workload: instructions/request, all counted},
    {workload: instructions/request less the idle rate times the window's length}) and,
    with admin_port, Envoy's config_dump."""
    out = os.path.join(workdir, f"{label}.callgrind")
    log = open(os.path.join(workdir, f"{label}.log"), "w")
    envoy = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--instr-atstart=no",
         fi.envoy_binary(), "-c", config_path, "--concurrency", "1", "--disable-hot-restart", "-l", "warning",
         "--drain-time-s", "1"], stdout=log, stderr=log)
    dump = None
    started = time.time()
    windows = []
    try:
        wait_answer(port, runs[0], READY_TIMEOUT, envoy)
        for workload in runs:
            send(port, workload, WARM_REQUESTS, time.time() + 600)
            fi.control(envoy.pid, "--instr=on")
            window = time.time()
            send(port, workload, requests, time.time() + 900)
            fi.control(envoy.pid, "--dump")
            windows.append(time.time() - window)
            fi.control(envoy.pid, "--instr=off")
        fi.control(envoy.pid, "--instr=on")
        window = time.time()
        time.sleep(IDLE_SECONDS)
        fi.control(envoy.pid, "--dump")
        idle_seconds = time.time() - window
        fi.control(envoy.pid, "--instr=off")
        if admin_port:
            conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=120)
            conn.request("GET", "/config_dump?include_eds")
            dump = json.loads(conn.getresponse().read())
            conn.close()
    finally:
        envoy.terminate()
        envoy.wait(timeout=120)
        log.close()
    dumps = sorted((f for f in os.listdir(workdir) if re.fullmatch(rf"{re.escape(label)}\.callgrind\.\d+", f)),
                   key=lambda f: int(f.rsplit(".", 1)[1]))
    if len(dumps) != len(runs) + 1:
        raise SystemExit(f"{label}: expected {len(runs) + 1} callgrind dumps, found {dumps}")
    totals = []
    for name in dumps:
        with open(os.path.join(workdir, name)) as f:
            totals.append(int(re.search(r"^totals:\s+(\d+)", f.read(), re.M).group(1)))
    idle_rate = totals[-1] / idle_seconds
    counts = {w.name: total / requests for w, total in zip(runs, totals)}
    request_path = {w.name: (total - idle_rate * seconds) / requests for w, total, seconds in zip(runs, totals, windows)}
    print(f"{label}: {', '.join(f'{k} {v:,.0f} ({request_path[k]:,.0f})' for k, v in counts.items())} "
          f"instructions/request (less idle {idle_rate:,.0f}/s over {windows[0]:.1f} s; {time.time() - started:.0f} s)",
          file=sys.stderr)
    IDLE_RATES[label] = idle_rate
    return counts, request_path, dump


IDLE_RATES = {}  # {callgrind label: instructions per second with no requests}


# --- the deployed stack -------------------------------------------------------------------

class ControlPlane:
    """`stagedoor serve` on free ports; `processes` gets it at once, so it is stopped even if it never comes up."""

    def __init__(self, workdir, name, registry, tls_dir, processes, binary=fc.BIN, wasm=fc.WASM):
        self.xds, self.http, self.metrics, self.listen = (fc.free_port() for _ in range(4))
        log = open(os.path.join(workdir, f"control-plane-{name}.log"), "w")
        # As scripts/run.sh and docker-compose.yml deploy it: the HMAC-only module beside the full
        # one, pushed while every key is an HMAC secret (the bench registry's are).
        hmac_only = os.path.join(os.path.dirname(wasm), "stagedoor_filter_hmac.wasm")
        self.process = subprocess.Popen(
            [binary, "serve", "--registry", registry, "--xds", f"127.0.0.1:{self.xds}", "--http", f"127.0.0.1:{self.http}",
             "--metrics", f"127.0.0.1:{self.metrics}", "--tls-dir", tls_dir, "--listen", f"127.0.0.1:{self.listen}",
             "--wasm", wasm, *(["--wasm-hmac", hmac_only] if os.path.exists(hmac_only) else [])],
            stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "NO_COLOR": "1"})
        processes.append(self.process)
        deadline = time.time() + 60
        while time.time() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", self.metrics, timeout=2)
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            conn.close()
            time.sleep(0.3)
        raise SystemExit(f"control plane {name} never answered /healthz")


def ads_bootstrap(workdir, node, admin, cp, tls_dir, template=os.path.join(fc.ROOT, "envoy/bootstrap.yaml")):
    stagedoor("certs", "envoy", "--dir", tls_dir, "--node-id", node)
    with open(template) as f:
        text = f.read()
    for key, value in (("NODE_ID", node), ("ADMIN_PORT", admin), ("XDS_ENDPOINTS", ("[{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %s } } } }]" % (cp.xds,))),
                       ("XDS_API_TYPE", "GRPC"), ("TLS_DIR", tls_dir)):
        text = text.replace("${" + key + "}", str(value))
    path = os.path.join(workdir, f"bootstrap-{node}.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


# --- the pushed config, made static ---------------------------------------------------------

def without_type(message):
    return {k: v for k, v in message.items() if k != "@type"}


def static_from_dump(dump, secrets):
    """A static bootstrap equal to what the ADS-fed Envoy ran: listener with its routes inline,
    the ECDS filter inline, EDS clusters with their endpoints as load_assignment, and
    `secrets`, the bootstrap's (the dump redacts the key's path; the revocation feed still
    reaches the control plane over mTLS)."""
    by = {c["@type"].rsplit(".", 1)[-1]: c for c in dump["configs"]}
    boot = by["BootstrapConfigDump"]["bootstrap"]
    routes = {r["route_config"]["name"]: without_type(r["route_config"]) for r in by["RoutesConfigDump"]["dynamic_route_configs"]}
    ecds = {f["ecds_filter"]["name"]: f["ecds_filter"]["typed_config"] for f in by["EcdsConfigDump"]["ecds_filters"]}
    endpoints = {e["endpoint_config"]["cluster_name"]: without_type(e["endpoint_config"])
                 for e in by["EndpointsConfigDump"].get("dynamic_endpoint_configs", [])}
    listeners = [without_type(entry["active_state"]["listener"]) for entry in by["ListenersConfigDump"]["dynamic_listeners"]]
    for hcm in hcms({"static_resources": {"listeners": listeners}}):
        hcm["route_config"] = routes[hcm.pop("rds")["route_config_name"]]
        for f in hcm["http_filters"]:
            if "config_discovery" in f:
                f.pop("config_discovery")
                f["typed_config"] = ecds[f["name"]]
    clusters = []
    for entry in by["ClustersConfigDump"]["dynamic_active_clusters"]:
        cluster = without_type(entry["cluster"])
        if cluster.get("type") == "EDS":
            service = cluster.pop("eds_cluster_config").get("service_name", cluster["name"])
            cluster["type"] = "STATIC"
            cluster["load_assignment"] = endpoints[service]
            for locality in cluster["load_assignment"]["endpoints"]:
                # The dump shows the resolved state: a locality weight of 0 means unset.
                if not locality.get("load_balancing_weight"):
                    locality.pop("load_balancing_weight", None)
        clusters.append(cluster)
    static = {"node": {"id": boot["node"]["id"], "cluster": boot["node"]["cluster"]}, "admin": boot["admin"],
              "static_resources": {"secrets": secrets, "listeners": listeners, "clusters": clusters}}
    for key in ("stats_config", "layered_runtime", "memory_allocator_manager"):  # the bootstrap's own
        if key in boot:
            static[key] = boot[key]
    return static


def hcms(config):
    for listener in config["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                if f["name"] == "envoy.filters.network.http_connection_manager":
                    yield f["typed_config"]


def routes_of(config):
    for hcm in hcms(config):
        for vhost in hcm["route_config"]["virtual_hosts"]:
            yield vhost


def proxied_routes(config):
    return [r for vhost in routes_of(config) for r in vhost["routes"] if "route" in r]


def service_clusters(config):
    return [c for c in config["static_resources"]["clusters"] if c["name"].startswith("svc_")]


def set_ports(config, port, admin):
    config["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}}
    for listener in config["static_resources"]["listeners"]:
        listener["address"]["socket_address"]["port_value"] = port


def replace_stagedoor_filter(config, replacement):
    for hcm in hcms(config):
        filters = hcm["http_filters"]
        at = next(i for i, f in enumerate(filters) if f["name"] == "stagedoor")
        filters[at:at + 1] = replacement


def response_mutation(hcm):
    return next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.header_mutation")


def native_filters(parity=False):
    """filter_cost.py's native jwt_authn + rbac + request header_mutation, without its own
    response stripping (the deployed config's response header_mutation stays). `parity`: also
    what else of the filter's work Envoy's filters can express (filter_cost.py's parity: the
    whole request block list and x-internal-* dropped, the venues claim as x-venue-ids,
    x-tenant-source added), i.e. native "doing the same checks, writing the same identity
    headers as far as native can" (issue 18's definition of the comparison)."""
    text = fc.native_filters(SECRET, parity=parity)
    return yaml.safe_load(textwrap.dedent(text[: -len(fc.RESPONSE_STRIP)]))


def floor_filter(config, mode=""):
    """bench/wasm_floor in Stagedoor's place; `mode` is what else it does per request
    ("": nothing, "headers" or "state": see the module's doc)."""
    wasm = copy.deepcopy(next(f for hcm in hcms(config) for f in hcm["http_filters"] if f["name"] == "stagedoor"))
    inner = wasm["typed_config"]["config"]
    inner.update({"name": "floor", "root_id": "floor", "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": mode}})
    inner["vm_config"] = {**inner["vm_config"], "vm_id": "floor", "code": {"local": {"filename": FLOOR_WASM}}}
    wasm["name"] = "floor"
    return [wasm]


# The identity headers and the filter-state keys bench/wasm_floor's "state" mode writes them to.
IDENTITY_STATE = [("x-tenant-id", "stagedoor_tenant_id"), ("x-tenant-source", "stagedoor_tenant_source"),
                  ("x-user-id", "stagedoor_user_id"), ("x-user-role", "stagedoor_user_role"),
                  ("x-user-permissions", "stagedoor_user_permissions"), ("x-venue-ids", "stagedoor_venue_ids"),
                  ("x-stagedoor-identity", "stagedoor_identity")]


def identity_from_filter_state(config):
    """The floor in "state" mode, and every virtual host removing the client's copies of the
    identity headers and adding them from filter state (Envoy removes before it adds)."""
    replace_stagedoor_filter(config, floor_filter(config, "state"))
    for vhost in routes_of(config):
        vhost["request_headers_to_remove"] = vhost.get("request_headers_to_remove", []) + [h for h, _ in IDENTITY_STATE]
        vhost["request_headers_to_add"] = vhost.get("request_headers_to_add", []) + [
            {"header": {"key": h, "value": f"%FILTER_STATE(wasm.{k}:PLAIN)%"}, "append_action": "APPEND_IF_EXISTS_OR_ADD"}
            for h, k in IDENTITY_STATE]


def drop_header_routes(config, names):
    for vhost in routes_of(config):
        vhost["routes"] = [r for r in vhost["routes"] if not any(r.get("name", "").endswith(":" + n) for n in names)]


def edit_each(items, edit):
    for item in items:
        edit(item)


# What each variant removes from the static as-deployed config. Hash policies: the control
# plane pushes none (checked in the dump by `hash_policy_count`), so there is no row.
VARIANTS = [
    ("without the wasm filter", lambda c: replace_stagedoor_filter(c, [])),
    ("without the response header_mutation (one regex entry)",
     lambda c: edit_each(hcms(c), lambda h: h["http_filters"].remove(response_mutation(h)))),
    ("response header_mutation cut to its first entry (now all of it: a repeat of the base)",
     lambda c: edit_each(hcms(c), lambda h: response_mutation(h)["typed_config"]["mutations"].update(
         response_mutations=response_mutation(h)["typed_config"]["mutations"]["response_mutations"][:1]))),
    ("without the idempotency-key route (present_match)", lambda c: drop_header_routes(c, ["idempotency-key"])),
    ("one route per prefix (no header matchers)", lambda c: drop_header_routes(c, ["idempotency-key", "idempotent"])),
    ("without retry policies", lambda c: edit_each(proxied_routes(c), lambda r: r["route"].pop("retry_policy", None))),
    ("without route metadata", lambda c: edit_each(proxied_routes(c), lambda r: r.pop("metadata", None))),
    ("without outlier detection", lambda c: edit_each(service_clusters(c), lambda cl: cl.pop("outlier_detection", None))),
    ("without circuit breakers", lambda c: edit_each(service_clusters(c), lambda cl: cl.pop("circuit_breakers", None))),
    ("without health checks", lambda c: edit_each(service_clusters(c), lambda cl: cl.pop("health_checks", None))),
    ("without local-reply mappers", lambda c: edit_each(hcms(c), lambda h: h.pop("local_reply_config", None))),
    ("without request id in responses", lambda c: edit_each(hcms(c), lambda h: h.pop("always_set_request_id_in_response", None))),
    ("without request ids (generate_request_id off)",
     lambda c: edit_each(hcms(c), lambda h: (h.pop("always_set_request_id_in_response", None), h.update(generate_request_id=False)))),
    ("without stats (stats_matcher reject_all)", lambda c: c.update(stats_config={"stats_matcher": {"reject_all": True}})),
    # Issue 18's moonshot, priced on the floor so the filter's logic does not enter: the
    # identity as seven header writes (what the filter does) or as seven filter-state writes
    # the virtual host's request_headers_to_add expands.
    ("moonshot: the wasm floor + seven identity header writes (1 replace, 6 adds)",
     lambda c: replace_stagedoor_filter(c, floor_filter(c, "headers"))),
    ("moonshot: the wasm floor + the seven writes, the statement 57 bytes (v2.<ts>.<MAC>) instead of 317",
     lambda c: replace_stagedoor_filter(c, floor_filter(c, "short"))),
    ("moonshot: the wasm floor + the identity in one proxy_set_header_map_pairs (the map written back)",
     lambda c: replace_stagedoor_filter(c, floor_filter(c, "pairs"))),
    ("moonshot: the wasm floor + seven filter-state writes, expanded by request_headers_to_add",
     identity_from_filter_state),
    # What one header write is made of, on the floor (bench/wasm_floor's doc): a host call
    # alone, a remove of an absent header (a lookup and the route matched again: Envoy
    # clears the route cache on every request-header change), two of them, one real add.
    ("write parts: the wasm floor + one host call (a clock read)", lambda c: replace_stagedoor_filter(c, floor_filter(c, "clock"))),
    ("write parts: the wasm floor + one remove of an absent header", lambda c: replace_stagedoor_filter(c, floor_filter(c, "remove1"))),
    ("write parts: the wasm floor + two removes of an absent header", lambda c: replace_stagedoor_filter(c, floor_filter(c, "remove2"))),
    ("write parts: the wasm floor + one add (x-tenant-source: jwt)", lambda c: replace_stagedoor_filter(c, floor_filter(c, "add1"))),
]

# The cuts of issue 18, each undone alone in the static as-deployed config: what each saves,
# in the same run (the "before" ADS row, --before, undoes them all and the filter build too).
# The three x-internal-* names the one regex leaves to its prefix.
PREFIX_COVERED = ["x-internal-service", "x-internal-signature", "x-internal-key"]


def original_strip_list(hcm):
    """The 17 entries pushed before: remove_on_match on the x-internal- prefix, then one
    `remove` per name (the names read back from the one regex now pushed)."""
    mutations = response_mutation(hcm)["typed_config"]["mutations"]
    regex = mutations["response_mutations"][0]["remove_on_match"]["key_matcher"]["safe_regex"]["regex"]
    prefix, *names = regex.split("|")
    mutations["response_mutations"] = (
        [{"remove_on_match": {"key_matcher": {"prefix": prefix.removesuffix(".*"), "ignore_case": True}}}]
        + [{"remove": n} for n in PREFIX_COVERED + names])


def revocation_wait(config, wait_ms):
    for hcm in hcms(config):
        for f in hcm["http_filters"]:
            if f["name"] == "stagedoor":
                inner = f["typed_config"]["config"]["configuration"]
                policy = json.loads(inner["value"])
                policy["revocation"]["wait_ms"] = wait_ms
                inner["value"] = json.dumps(policy)


UNDONE_CUTS = [
    ("cut undone: the original 17-entry response strip list", lambda c: edit_each(hcms(c), original_strip_list)),
    ("cut undone: all stats kept (no stats_matcher)", lambda c: c.pop("stats_config", None)),
    ("cut undone: revocations polled every 250 ms (wait_ms 0)", lambda c: revocation_wait(c, 0)),
    ("cut undone: router dynamic stats on", lambda c: edit_each(hcms(c), lambda h: next(
        f for f in h["http_filters"] if f["name"] == "envoy.filters.http.router")["typed_config"].pop("dynamic_stats", None))),
    ("cut undone: no heap release (memory_allocator_manager)", lambda c: c.pop("memory_allocator_manager", None)),
]


def drop_local_reply_mapper(config, status):
    """Removes the mapper matching one status code (429, 413) from every connection manager."""
    for hcm in hcms(config):
        mappers = hcm["local_reply_config"]["mappers"]
        keep = [m for m in mappers
                if m["filter"].get("status_code_filter", {}).get("comparison", {}).get("value", {}).get("default_value") != status]
        if len(keep) != len(mappers) - 1:
            raise SystemExit(f"local_reply_config: expected one mapper for status {status}")
        hcm["local_reply_config"]["mappers"] = keep


# The local-reply mappers priced where they run: on the filter's own refusals. The base row
# is the static config again, on the 401 and 403 workloads.
REFUSALS_BASE = "refusals: the pushed config, static"
REFUSAL_VARIANTS = [
    (f"{REFUSALS_BASE}, without local-reply mappers", lambda c: edit_each(hcms(c), lambda h: h.pop("local_reply_config", None))),
    (f"{REFUSALS_BASE}, without the 413 mapper", lambda c: drop_local_reply_mapper(c, 413)),
    (f"{REFUSALS_BASE}, without the 413 and 429 mappers",
     lambda c: (drop_local_reply_mapper(c, 413), drop_local_reply_mapper(c, 429))),
]


MODULE_ROW = "the pushed config, static, module: "


def swap_module(config, module, name="stagedoor"):
    """The Stagedoor filter's (or the filter `name`'s) vm_config reads `module` instead of the build the control plane named."""
    for hcm in hcms(config):
        for f in hcm["http_filters"]:
            if f["name"] == name:
                f["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = os.path.abspath(module)


def hash_policy_count(config):
    return sum(len(r["route"].get("hash_policy", [])) for r in proxied_routes(config))


# --- CPU ------------------------------------------------------------------------------------

def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1)) / 1024


def cpu_rounds(gateways, rounds, seconds, token):
    """filter_cost.py's paired rounds: every gateway loaded at once per burst."""
    results = {name: [] for name, _, _ in gateways}
    for name, _, port in gateways:
        fc.wrk(port, 2, token)  # warm up
    for round_no in range(rounds):
        for (name, _, _), r in zip(gateways, fc.together(gateways, seconds, token)):
            results[name].append(r)
            print(f"cpu round {round_no + 1} {name}: {r['cpu_us']:.1f} µs/req", file=sys.stderr)
    return results


def start_cpu_envoy(config_text, workdir, name, suffix):
    path = os.path.join(workdir, f"cpu-{name}.{suffix}")
    with open(path, "w") as f:
        f.write(config_text)
    log = open(os.path.join(workdir, f"cpu-{name}.log"), "w")
    return subprocess.Popen(["taskset", "-c", "0", fi.envoy_binary(), "-c", path, "--concurrency", "1",
                             "--disable-hot-restart", "-l", "warning", "--drain-time-s", "1"],
                            stdout=subprocess.DEVNULL, stderr=log)


# --- report ---------------------------------------------------------------------------------

def fmt(n):
    return f"{n:,.0f}"


def report(args, counts, breakdown, static_name, cpu, rss, hash_policies, idle, refusals, modules, static_base):
    """counts: {configuration: ({workload: all counted}, {workload: less the idle rate})};
    breakdown: {variant: (all counted, less the idle rate)} for the 200 workload."""
    plain, plain_path = (counts["plain Envoy"][i]["200"] for i in (0, 1))
    native, native_path = (counts[NATIVE][i]["200"] for i in (0, 1))
    parity, parity_path = (counts[PARITY][i]["200"] for i in (0, 1)) if PARITY in counts else (None, None)

    def over(c, base, reference):
        return "" if reference is None or reference == base else f"{(c - base) / (reference - base):.2f}"
    lines = [
        f"Envoy 1.40 under callgrind, --concurrency 1; {args.requests} requests per workload on one connection, "
        f"after {WARM_REQUESTS} warm-up requests; {time.strftime('%Y-%m-%d %H:%M')} on {os.uname().nodename}. "
        "Control plane: target/debug/stagedoor serve, mutual TLS, ADS (state of the world). "
        f"\"less idle\": minus what the same Envoy counted per second in a {IDLE_SECONDS} s window with no requests "
        "(timers, the filter's tick and revocation poll, the ADS stream), times the window's length.",
        "",
        "## As deployed (GET, HS256 token, spoofed x-tenant-id: 200)",
        "",
        "| Envoy with ... | instructions/req | added over plain | x plain | added / native's | added / parity's "
        "| less idle | added over plain | added / native's | added / parity's |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (raw, path) in counts.items():
        c, q = raw["200"], path["200"]
        if name == "plain Envoy":
            lines.append(f"| {name} | {fmt(c)} | — | 1.00 | | | {fmt(q)} | — | | |")
            continue
        lines.append(
            f"| {name} | {fmt(c)} | {c - plain:+,.0f} | {c / plain:.2f} | {over(c, plain, native)} | "
            f"{over(c, plain, parity)} | {fmt(q)} | {q - plain_path:+,.0f} | {over(q, plain_path, native_path)} | "
            f"{over(q, plain_path, parity_path)} |")
    lines += ["", "native: three claims to headers, the six identity headers dropped. parity: what the issue's target "
              "compares with, native doing the same checks and writing the same identity headers as far as Envoy's "
              "filters can (five of Stagedoor's seven: no x-user-permissions from the role's defaults, no signed "
              "statement; the whole block list and x-internal-* dropped from requests)."]
    lines += ["", "## Bad input and a cold token (instructions/req, all counted; less idle in brackets)", "",
              "| Envoy with ... | 200 | 401 bad signature | 403 | cold token (first use) |", "|---|---:|---:|---:|---:|"]
    for name, (raw, path) in counts.items():
        if len(raw) > 1:
            cells = (f"{fmt(raw[w])} ({fmt(path[w])})" if w in raw else "" for w in ("200", "401 bad signature", "403", "cold token"))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "403: Stagedoor, GET /api/v1/venues/v9/reports with a token for venues v1,v2 (venue scope); "
              "native, a token whose type is `refresh` (rbac). Cold: every request carries a token never seen before "
              "(new jti, signed again), so the signature is verified and the cache filled."]
    if idle:
        lines += ["", f"## Idle (instructions per second counted in the {IDLE_SECONDS} s window with no requests)", "",
                  "| Envoy with ... | instructions/s idle |", "|---|---:|"]
        lines += [f"| {name} | {fmt(rate)} |" for name, rate in idle.items()]
    if breakdown:
        base, base_path = breakdown[static_name]
        lines += ["", f"## Breakdown: the pushed config made static, one element removed at a time", "",
                  "| variant | instructions/req | less idle | what the element adds per request (less idle) | (all counted) |",
                  "|---|---:|---:|---:|---:|"]
        for name, (c, q) in breakdown.items():
            added = "" if name == static_name else f"{base_path - q:+,.0f} | {base - c:+,.0f}"
            lines.append(f"| {name} | {fmt(c)} | {fmt(q)} | {added or ' | '} |")
        lines.append(f"\nHash policies pushed: {hash_policies} (no row).")
    if REFUSALS_BASE in refusals:
        base_raw, base_path = refusals[REFUSALS_BASE]
        lines += ["", "## Local replies: the pushed config made static, priced on the 401 and the 403", "",
                  "Envoy matches every local reply (the filter's 401 and 403 too) against the mappers in order; "
                  "a 200 never reaches them, so the 200 breakdown above cannot price them.", "",
                  "| variant | 401 bad signature | less idle | adds (less idle) | 403 | less idle | adds (less idle) |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, (raw, path) in refusals.items():
            cells = []
            for w in ("401 bad signature", "403"):
                added = "" if name == REFUSALS_BASE else f"{base_path[w] - path[w]:+,.0f}"
                cells += [fmt(raw[w]), fmt(path[w]), added]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if modules:
        lines += ["", "## Filter builds: the pushed config made static, the Stagedoor module swapped (--module)", "",
                  "| module | 200 | less idle | over the static config (less idle) | 401 bad signature | less idle | "
                  "403 | less idle |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, (raw, path) in modules.items():
            lines.append(f"| {name.removeprefix(MODULE_ROW)} | {fmt(raw['200'])} | {fmt(path['200'])} | "
                         f"{path['200'] - static_base[1]['200']:+,.0f} | {fmt(raw['401 bad signature'])} | "
                         f"{fmt(path['401 bad signature'])} | {fmt(raw['403'])} | {fmt(path['403'])} |")
    if cpu:
        base = cpu["plain Envoy"]
        med = {n: statistics.median(r["cpu_us"] for r in runs) for n, runs in cpu.items()}
        lines += ["", f"## CPU time ({args.rounds} rounds x {args.seconds} s, all Envoys on core 0 loaded at once, "
                  "wrk -t1 -c32 on core 1; medians)", "",
                  "| Envoy with ... | CPU µs/req | x plain (per round, median) | added / native's added (per round, median) "
                  "| added / parity's added (per round, median) | RSS MB after |",
                  "|---|---:|---:|---:|---:|---:|"]

        def vs(name, runs, reference):
            if name == "plain Envoy" or reference not in cpu:
                return ""
            ratios = [(r["cpu_us"] - p["cpu_us"]) / (n["cpu_us"] - p["cpu_us"])
                      for r, p, n in zip(runs, base, cpu[reference]) if n["cpu_us"] > p["cpu_us"]]
            return f"{statistics.median(ratios):.2f}" if ratios else ""
        for name, runs in cpu.items():
            x_plain = statistics.median(r["cpu_us"] / p["cpu_us"] for r, p in zip(runs, base))
            lines.append(f"| {name} | {med[name]:.1f} | {x_plain:.2f} | {vs(name, runs, NATIVE)} | "
                         f"{vs(name, runs, PARITY)} | {rss[name]:.1f} |")
    fc.write_report(lines, args.out)


NATIVE = "native jwt_authn + rbac + header_mutation (JWT cache on), same traffic policy"
PARITY = "native, parity (also the block list, x-internal-*, x-venue-ids, x-tenant-source), same traffic policy"
ADS_KEY = "Stagedoor over ADS, identity signing on"
ADS_NOKEY = "Stagedoor over ADS, no identity key"
ADS_BEFORE = "Stagedoor over ADS, identity signing on, the --before build (main when this work began)"
FLOOR = "wasm floor (empty filter + one header-map read) in Stagedoor's place"


def build_floor():
    env = {**os.environ, "RUSTC_BOOTSTRAP": "1", "RUSTC": "/usr/bin/rustc"}
    subprocess.run(["/usr/bin/cargo", "build", "-q", "--release", "--target", "wasm32-wasip1", "-Zbuild-std=core",
                    "--target-dir", os.path.dirname(os.path.dirname(os.path.dirname(FLOOR_WASM)))],
                   cwd=FLOOR_DIR, env=env, check=True, timeout=900)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7, help="CPU rounds")
    ap.add_argument("--seconds", type=int, default=3, help="length of one CPU burst")
    ap.add_argument("--jobs", type=int, default=2, help="callgrind Envoys at once for the static configs")
    ap.add_argument("--no-breakdown", action="store_true")
    ap.add_argument("--no-cpu", action="store_true")
    ap.add_argument("--out", default=os.path.join(fc.ROOT, "bench/results-deployed.md"))
    ap.add_argument("--before", metavar="DIR[=LABEL]", action="append", default=[],
                    help="also run the control plane as it was: DIR/stagedoor, DIR/stagedoor_filter.wasm and "
                    "DIR/bootstrap.yaml (identity signing on), in the same run; repeatable, LABEL names the row")
    ap.add_argument("--module", metavar="LABEL=PATH", action="append", default=[],
                    help="also run the pushed config, static, with the Stagedoor filter's module swapped for PATH "
                    "(a filter build to compare: 200, 401 and 403); repeatable")
    ap.add_argument("--variants", metavar="REGEX", help="only the breakdown variants whose name matches")
    ap.add_argument("--keep", metavar="DIR", help="keep configs, logs, dumps and callgrind files in DIR (must be empty)")
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control", "wrk", "taskset"):
        if not subprocess.run(["which", tool], capture_output=True).returncode == 0:
            raise SystemExit(f"{tool} not found: run scripts/bootstrap.sh")
    build_floor()
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        if os.listdir(args.keep):
            raise SystemExit(f"--keep {args.keep}: not empty")
    processes = []
    with (contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory(prefix="stagedoor-deployed-")) as workdir:
        try:
            upstream_port = fc.free_port()
            processes.append(fc.start_envoy(fc.UPSTREAM.format(admin=fc.free_port(), port=upstream_port), 1, workdir, "upstream"))
            tls_dir = os.path.join(workdir, "tls")
            stagedoor("certs", "init", "--dir", tls_dir)
            with_key = write_registry(workdir, "key", upstream_port, identity=True)
            no_key = write_registry(workdir, "nokey", upstream_port, identity=False)
            cp_key = ControlPlane(workdir, "key", with_key, tls_dir, processes)
            cp_nokey = ControlPlane(workdir, "nokey", no_key, tls_dir, processes)
            ads = [(ADS_KEY, cp_key, "bench-key", None), (ADS_NOKEY, cp_nokey, "bench-nokey", None)]
            for i, before in enumerate(args.before):
                before_dir, _, label = before.partition("=")
                suffix = "" if i == 0 else f"{i + 1}"
                cp_before = ControlPlane(workdir, f"before{suffix}", with_key, tls_dir, processes,
                                         os.path.join(before_dir, "stagedoor"), os.path.join(before_dir, "stagedoor_filter.wasm"))
                name = f"Stagedoor over ADS, identity signing on, {label}" if label else ADS_BEFORE
                ads.append((name, cp_before, f"bench-before{suffix}", os.path.join(before_dir, "bootstrap.yaml")))
            hot = stagedoor("token", "--registry", with_key, "--role", "venue-manager", "--venues", "v1,v2", "--ttl", "4h")
            tokens = {"hot": hot, "bad": bad_signature(hot),
                      "refresh": stagedoor("token", "--registry", with_key, "--role", "venue-manager", "--venues", "v1,v2",
                                           "--ttl", "4h", "--type", "refresh")}
            stagedoor_runs = workloads(tokens, Workload("403", PATH_FORBIDDEN, lambda i: tokens["hot"], 403))
            native_runs = workloads(tokens, Workload("403", PATH_OK, lambda i: tokens["refresh"], 403))
            ok_only = stagedoor_runs[:1]
            counts = {}

            plain_port = fc.free_port()
            plain_path = os.path.join(workdir, "plain.yaml")
            with open(plain_path, "w") as f:
                f.write(fc.gateway_yaml("", plain_port, fc.free_port(), upstream_port))
            counts["plain Envoy"] = callgrind("plain", plain_path, workdir, plain_port, ok_only, args.requests)[:2]
            labels = {"plain Envoy": "plain"}

            dumps, boots = {}, {}
            for name, cp, node, template in ads:
                admin = fc.free_port()
                boot = boots[node] = ads_bootstrap(workdir, node, admin, cp, tls_dir, *([template] if template else []))
                *counts[name], dumps[node] = callgrind(node, boot, workdir, cp.listen, stagedoor_runs, args.requests, admin)
                labels[name] = node
                with open(os.path.join(workdir, f"config_dump-{node}.json"), "w") as f:
                    json.dump(dumps[node], f)

            with open(boots["bench-key"]) as f:
                secrets = yaml.safe_load(f)["static_resources"]["secrets"]
            deployed = static_from_dump(dumps["bench-key"], secrets)
            static_name = "the pushed config, static (identity signing on)"

            def static_run(name, edit, runs):
                config = copy.deepcopy(deployed)
                edit(config)
                port = fc.free_port()
                set_ports(config, port, fc.free_port())
                label = labels[name] = re.sub(r"\W+", "-", name.lower()).strip("-")[:60]
                path = os.path.join(workdir, f"{label}.json")
                with open(path, "w") as f:
                    json.dump(config, f, indent=1)
                return callgrind(label, path, workdir, port, runs, args.requests)[:2]

            jobs = [(static_name, lambda c: None, ok_only),
                    (NATIVE, lambda c: replace_stagedoor_filter(c, native_filters()), native_runs),
                    (PARITY, lambda c: replace_stagedoor_filter(c, native_filters(parity=True)), native_runs),
                    (FLOOR, lambda c: replace_stagedoor_filter(c, floor_filter(c)), ok_only)]
            refusals = stagedoor_runs[1:3]
            jobs += [(f"{MODULE_ROW}{label}", lambda c, m=module: swap_module(c, m), stagedoor_runs[:3])
                     for label, _, module in (m.partition("=") for m in args.module)]
            if not args.no_breakdown:
                jobs += [(name, edit, ok_only) for name, edit in VARIANTS + UNDONE_CUTS
                         if not args.variants or re.search(args.variants, name)]
                jobs += [(name, edit, refusals) for name, edit in [(REFUSALS_BASE, lambda c: None)] + REFUSAL_VARIANTS
                         if not args.variants or re.search(args.variants, name)]
            with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
                futures = {name: pool.submit(static_run, name, edit, runs) for name, edit, runs in jobs}
                static_counts = {name: future.result() for name, future in futures.items()}
            counts[NATIVE] = static_counts.pop(NATIVE)
            counts[PARITY] = static_counts.pop(PARITY)
            counts[static_name] = static_counts[static_name]
            counts[FLOOR] = static_counts.pop(FLOOR)
            refusal_breakdown = {name: static_counts.pop(name) for name in list(static_counts) if name.startswith(REFUSALS_BASE)}
            modules = {name: static_counts.pop(name) for name in list(static_counts) if name.startswith(MODULE_ROW)}
            breakdown = {name: (raw["200"], path["200"]) for name, (raw, path) in static_counts.items()} if not args.no_breakdown else {}

            cpu, rss = {}, {}
            if not args.no_cpu:
                gateways = [("plain Envoy", start_cpu_envoy(fc.gateway_yaml("", plain_port, fc.free_port(), upstream_port),
                                                            workdir, "plain", "yaml"), plain_port)]
                for name, parity, label in ((NATIVE, False, "native"), (PARITY, True, "parity")):
                    native_config = copy.deepcopy(deployed)
                    replace_stagedoor_filter(native_config, native_filters(parity))
                    native_port = fc.free_port()
                    set_ports(native_config, native_port, fc.free_port())
                    gateways.append((name, start_cpu_envoy(json.dumps(native_config), workdir, label, "json"), native_port))
                for name, cp, node, template in ads:
                    with open(ads_bootstrap(workdir, node, fc.free_port(), cp, tls_dir, *([template] if template else []))) as f:
                        gateways.append((name, start_cpu_envoy(f.read(), workdir, node, "yaml"), cp.listen))
                processes += [g for _, g, _ in gateways]
                for name, g, port in gateways:
                    wait_answer(port, ok_only[0], 120, g)
                cpu = cpu_rounds(gateways, args.rounds, args.seconds, hot)
                rss = {name: rss_mb(g.pid) for name, g, _ in gateways}
        finally:
            for p in reversed(processes):
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=30)
        if args.keep:  # the raw figures, for re-rendering the report
            with open(os.path.join(args.keep, "results.json"), "w") as f:
                json.dump({"counts": counts, "breakdown": breakdown, "refusals": refusal_breakdown, "modules": modules, "cpu": cpu, "rss": rss,
                           "idle": IDLE_RATES}, f)
    idle = {name: IDLE_RATES[label] for name, label in labels.items()
            if label in IDLE_RATES and (name in counts or name.startswith("cut undone") or name == static_name)}
    report(args, counts, breakdown, static_name, cpu, rss, hash_policy_count(deployed), idle, refusal_breakdown,
           modules, static_counts[static_name])


if __name__ == "__main__":
    main()
