#!/usr/bin/env bash
# Builds the edge worker (edge/build/index.js + index_bg.wasm) with the
# offline toolchain (see scripts/env.sh) and reports the wasm size.
# Usage: scripts/build-worker.sh [features]
#   With features (e.g. `probes`, for scripts/probe-edge.sh) the build goes
#   to edge/build-<features>/ with its own target directory, so the shipped
#   worker in edge/build/ is never one built with them.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT/edge"
FEATURES="${1:-}"
OUT=build
EXTRA=()
if [ -n "$FEATURES" ]; then
  OUT="build-$FEATURES"
  EXTRA=(--features "$FEATURES")
  export CARGO_TARGET_DIR="$ROOT/target/worker-$FEATURES"
fi
wasm="$ROOT/edge/$OUT/index_bg.wasm"
# Up to date? (wrangler dev runs this on every start; tests start it often.)
if [ -f "$wasm" ] && [ -z "$(find "$ROOT/edge/src" "$ROOT/shared/src" "$ROOT/edge/Cargo.toml" \
      "$ROOT/shared/Cargo.toml" "$ROOT/Cargo.lock" -newer "$wasm" -print -quit)" ]; then
  echo "worker is up to date ($wasm)"
  exit 0
fi
worker-build --release --out-dir "$OUT" . "${EXTRA[@]}" >/tmp/equilibrium-worker-build.log 2>&1 || {
  cat /tmp/equilibrium-worker-build.log >&2
  exit 1
}
raw=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
echo "worker wasm: $raw bytes raw, $gz bytes gzipped (limit 1 MiB gzipped target, 3 MiB free plan)"
