#!/usr/bin/env bash
# Builds the proxy-wasm filter with Debian's Rust (rustup's toolchain has no wasm target
# here), building std from source. Output: target/wasm32-wasip1/release/stagedoor_filter.wasm
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTC_BOOTSTRAP=1 \
RUSTC=/usr/bin/rustc \
CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS=-L/usr/lib/wasm32-wasi \
  /usr/bin/cargo build --release --target wasm32-wasip1 -Zbuild-std=std,panic_abort \
  -p stagedoor-filter-wasm "$@"
cp target/wasm32-wasip1/release/stagedoor_filter_wasm.wasm target/wasm32-wasip1/release/stagedoor_filter.wasm
