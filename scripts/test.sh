#!/usr/bin/env bash
# Runs every check and test: formatting, lints (native and wasm32), the
# core's unit/property/fixture tests natively and in wasm32, and the
# end-to-end tests against the real worker (wrangler dev / workerd).
# Installs what is missing first (scripts/setup.sh).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

bash scripts/setup.sh --browser

# A clean run needs about this much room for target/, fuzz/target and the
# tools; say so up front rather than fail mid-build with "No space left".
avail_kb=$(df -Pk "$ROOT" | awk 'NR == 2 { print $4 }')
echo "disk: $((avail_kb / 1024 / 1024)) GiB free under $ROOT"
if [ "$avail_kb" -lt $((8 * 1024 * 1024)) ]; then
  echo "warning: less than 8 GiB free; the build may run out of disk" >&2
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (native, all targets)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo clippy (wasm32: shared and edge, the core's wasm32 bench, the edge's probes)"
cargo clippy -p equilibrium-shared -p equilibrium-edge --target wasm32-unknown-unknown --locked -- -D warnings
cargo clippy -p equilibrium-shared --target wasm32-unknown-unknown --bench wasm --locked -- -D warnings
cargo clippy -p equilibrium-edge --features probes --target wasm32-unknown-unknown --locked -- -D warnings

LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT

step "shared in wasm32: the cell and fare fixtures and the desk's one-price rule under wasm-bindgen-test (node)"
cargo test -p equilibrium-shared --target wasm32-unknown-unknown --locked \
  --test s2_reference --test fare_fixture --test desk_agree 2>&1 | tee -a "$LOG"

step "build the worker"
bash scripts/build-worker.sh

step "cargo test (unit, property, fixture, end-to-end)"
cargo test --workspace --locked 2>&1 | tee -a "$LOG"

step "the benchmarks' load generator (scripts/load.mjs) against a counting server"
node --test scripts/load.test.mjs 2>&1 | tee -a "$LOG"

step "the map in headless Chromium (web-demo)"
bash web-demo/build.sh
cargo build -q --locked -p equilibrium-origin --bin origin
node --test web-demo/test/ 2>&1 | tee -a "$LOG"

step "schemathesis against the worker's OpenAPI document"
bash scripts/schemathesis.sh 40

step "fuzz targets, 20 s each"
bash scripts/fuzz.sh 20

# One closing line over every test binary above (pipefail already stopped
# the script if any of them failed).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     /^# pass [0-9]+$/ { p += $3 } /^# fail [0-9]+$/ { f += $3 }
     END { printf "\nsummary: %d passed, %d failed\n", p, f }' "$LOG"
