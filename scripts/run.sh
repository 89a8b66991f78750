#!/usr/bin/env bash
# The whole Stagedoor stack on this machine, in one command: installs what is missing,
# builds, then starts the control plane, one Envoy and the 19 TicketToken echo upstreams.
# Ctrl-C stops everything it started.
#
# Ports (override with the environment variables; HTTPS's is the registry's edge_tls.port):
#   HTTPS on 8443      the gateway (Envoy, TLS)         GATEWAY_PORT=8080  plain HTTP: 301 to HTTPS
#   ADMIN_PORT=9901    Envoy admin
#   XDS_PORT=18000     xDS + stagedoor.v1 gRPC (mTLS)    HTTP_PORT=18080  control-plane /status (mTLS)
#   XDS_ADDRESSES=127.0.0.1:18000  every replica Envoy may use (host:port,...), listed in its bootstrap
#   METRICS_PORT=18081 control-plane /metrics (plain)    REDIS_PORT=6379  live instances (a Redis
#                                                        already listening there is used as it is)
# Credentials: `stagedoor certs init` writes a development CA and the control plane's, the
# edge's (HTTPS, served by the registry's edge_tls), the Envoy's and the operator's
# certificates into .stagedoor/ once (kept on later runs); the CLI finds them there.
set -euo pipefail
cd "$(dirname "$0")/.."

GATEWAY_PORT=${GATEWAY_PORT:-8080}
ADMIN_PORT=${ADMIN_PORT:-9901}
XDS_PORT=${XDS_PORT:-18000}
HTTP_PORT=${HTTP_PORT:-18080}
METRICS_PORT=${METRICS_PORT:-18081}
REDIS_PORT=${REDIS_PORT:-6379}
REGISTRY=${REGISTRY:-registry/tickettoken.yaml}
STATE=.stagedoor
mkdir -p "$STATE"
# The registry says where HTTPS listens (edge_tls.port); empty: the registry serves plain HTTP.
HTTPS_PORT=$(sed -n '/^edge_tls:/,/^[^ #]/s/^  port: *\([0-9]*\).*/\1/p' "$REGISTRY" | head -n 1)
if [ -n "$HTTPS_PORT" ]; then
  GATEWAY_URL="https://localhost:$HTTPS_PORT"; CURL_CA="--cacert $STATE/ca.pem "
else
  GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT"; CURL_CA=""
fi

scripts/bootstrap.sh
echo "run: building the control plane and the filter"
cargo build -q -p stagedoor-control-plane -p stagedoor-echo
scripts/build-filter.sh -q
scripts/build-filter.sh --hmac-only -q
BIN=target/debug/stagedoor
ECHO_BIN=target/debug/stagedoor-echo
NODE_ID=local-$(hostname | tr -c 'A-Za-z0-9._\n-' '-')
"$BIN" certs init --dir "$STATE" --node-id "$NODE_ID" >/dev/null

pids=()
stop() {
  trap - INT TERM EXIT
  echo; echo "run: stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

if ! (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$STATE/redis.log" 2>&1 & pids+=($!)
fi
"$ECHO_BIN" --registry "$REGISTRY" 2>"$STATE/echo.log" & pids+=($!)
"$BIN" serve --registry "$REGISTRY" --xds "127.0.0.1:$XDS_PORT" --http "127.0.0.1:$HTTP_PORT" \
  --metrics "127.0.0.1:$METRICS_PORT" --tls-dir "$STATE" --listen "127.0.0.1:$GATEWAY_PORT" --redis "redis://127.0.0.1:$REDIS_PORT" \
  --wasm-hmac target/wasm32-wasip1/release/stagedoor_filter_hmac.wasm 2>"$STATE/control-plane.log" & pids+=($!)

# Every control-plane replica Envoy may use (host:port,host:port; default the one started
# here): the ADS cluster lists them all and fails over between them (envoy/bootstrap.yaml).
XDS_ENDPOINTS=""
IFS=, read -ra xds_addresses <<<"${XDS_ADDRESSES:-127.0.0.1:$XDS_PORT}"
for address in "${xds_addresses[@]}"; do
  XDS_ENDPOINTS+="${XDS_ENDPOINTS:+, }{ endpoint: { address: { socket_address: { address: ${address%:*}, port_value: ${address##*:} } } } }"
done
sed -e "s/\${NODE_ID}/$NODE_ID/g" -e "s/\${ADMIN_PORT}/$ADMIN_PORT/" -e "s|\${TLS_DIR}|$PWD/$STATE|g" \
    -e "s|\${XDS_ENDPOINTS}|[$XDS_ENDPOINTS]|" -e "s/\${XDS_API_TYPE}/${XDS_API_TYPE:-GRPC}/" \
    envoy/bootstrap.yaml > "$STATE/bootstrap.yaml"
# --drain-time-s bounds how long a replaced listener drains (Envoy's default is 600 s); policy
# edits replace no listener (the filter's config comes over ECDS), only listener changes do.
envoy -c "$STATE/bootstrap.yaml" --concurrency "${ENVOY_CONCURRENCY:-2}" --disable-hot-restart \
  --drain-time-s "${ENVOY_DRAIN_TIME_S:-15}" -l warning 2>"$STATE/envoy.log" & pids+=($!)

for _ in $(seq 1 150); do
  curl --noproxy '*' $CURL_CA-sf "$GATEWAY_URL/health" >/dev/null 2>&1 && break
  sleep 0.2
done
if ! curl --noproxy '*' $CURL_CA-sf "$GATEWAY_URL/health" >/dev/null; then
  echo "run: the gateway did not come up; see $STATE/*.log" >&2
  exit 1
fi

cat <<MSG

Stagedoor is up.
  gateway         $GATEWAY_URL   (try: curl ${CURL_CA}-H "Authorization: Bearer $($BIN token)" $GATEWAY_URL/api/v1/venues/1)
                  http://127.0.0.1:$GATEWAY_PORT   (plain HTTP: 301 to HTTPS when the registry has edge_tls)
  envoy admin     http://127.0.0.1:$ADMIN_PORT/config_dump
  control plane   $BIN status --server https://127.0.0.1:$XDS_PORT   (mutual TLS: the operator certificate in $STATE/)
                  curl --cacert $STATE/ca.pem --cert $STATE/operator.pem --key $STATE/operator-key.pem https://127.0.0.1:$HTTP_PORT/status
                  http://127.0.0.1:$METRICS_PORT/metrics
  registry        $REGISTRY  (edit and save: every Envoy gets the change)
  logs            $STATE/*.log
  redis           redis://127.0.0.1:$REDIS_PORT  (live instances: $BIN register --service venue --address 127.0.0.1 --port 4002 --heartbeat)
  dev token       $BIN token --registry $REGISTRY --sub u1 --tenant t1 --role customer

Ctrl-C stops everything.
MSG
wait -n "${pids[@]}" || true
echo "run: a component exited; see $STATE/*.log" >&2
