#!/usr/bin/env bash
# Every test: installs what is missing, builds the control plane and the wasm filter, runs
# the unit tests and the end-to-end tests (real Envoy, real control plane, echo upstreams),
# and validates docker-compose.yml. This is what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh
echo "test: building"
cargo build --all-targets
scripts/build-filter.sh -q
scripts/build-filter.sh --hmac-only -q
echo "test: clippy"
# --workspace: the wasm filter too, checked natively (its host imports are declared, never
# linked, in a check).
cargo clippy --workspace --all-targets -q -- -D warnings
echo "test: fuzz targets compile"
# The fuzz crate is outside the workspace (running it needs nightly and cargo-fuzz), so
# nothing else would notice a target that stopped compiling after a config change.
cargo check -q --manifest-path fuzz/Cargo.toml --bins
echo "test: docker-compose.yml"
docker-compose -f docker-compose.yml config -q
echo "test: unit and end-to-end tests"
cargo test --no-fail-fast -- --test-threads "${TEST_THREADS:-4}"
