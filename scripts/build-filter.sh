#!/usr/bin/env bash
# Builds the proxy-wasm filter with Debian's Rust (rustup's toolchain here has no wasm
# target), building std from source, then drops the SDK's exports for callbacks the filter
# does not use (Envoy would enter the VM for each on every request; see tools/wasm-trim).
# Output: target/wasm32-wasip1/release/stagedoor_filter.wasm; with --hmac-only first, the module
# that verifies HMAC keys only (no RSA/ECDSA/Ed25519 code), stagedoor_filter_hmac.wasm.
set -euo pipefail
cd "$(dirname "$0")/.."
out=stagedoor_filter.wasm
features=()
# The largest function body the module may have (tools/wasm-trim/src/largest.rs): Envoy keeps
# the memory TurboFan needed for the largest ones. The full module's are RustCrypto's
# (ed25519 verification, P-384 scalars: about 17 KB); the HMAC-only module's, SHA-512's
# rounds and the composite compiler (about 11 KB).
max_function_bytes=18432
if [[ "${1:-}" == --hmac-only ]]; then
  shift
  out=stagedoor_filter_hmac.wasm
  features=(--no-default-features)
  max_function_bytes=12288
fi
RUSTC_BOOTSTRAP=1 \
RUSTC=/usr/bin/rustc \
CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS=-L/usr/lib/wasm32-wasi \
  /usr/bin/cargo build --release --config 'profile.release.panic="abort"' --target wasm32-wasip1 -Zbuild-std=std,panic_abort \
  -p stagedoor-filter-wasm "${features[@]}" "$@"
# Request headers, body (webhook signatures) and trailers (identity headers stripped), the root context's ticks and callouts,
# and proxy_on_delete (the SDK frees the context there) stay. proxy_on_done goes: the SDK's
# answer is always "done", which is what Envoy assumes when the export is missing.
cargo run -q -p stagedoor-wasm-trim -- --max-function-bytes "$max_function_bytes" \
  target/wasm32-wasip1/release/stagedoor_filter_wasm.wasm \
  target/wasm32-wasip1/release/$out \
  proxy_on_request_metadata \
  proxy_on_response_headers proxy_on_response_body proxy_on_response_trailers proxy_on_response_metadata \
  proxy_on_log proxy_on_done proxy_on_downstream_data proxy_on_upstream_data proxy_on_new_connection \
  proxy_on_downstream_connection_close proxy_on_upstream_connection_close
