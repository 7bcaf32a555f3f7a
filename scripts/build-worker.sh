#!/usr/bin/env bash
# Builds the edge worker (edge/build/index.js + index_bg.wasm) with the
# offline toolchain (see scripts/env.sh) and reports the wasm size.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT/edge"
wasm="$ROOT/edge/build/index_bg.wasm"
# Up to date? (wrangler dev runs this on every start; tests start it often.)
if [ -f "$wasm" ] && [ -z "$(find "$ROOT/edge/src" "$ROOT/shared/src" "$ROOT/edge/Cargo.toml" \
      "$ROOT/shared/Cargo.toml" "$ROOT/Cargo.lock" -newer "$wasm" -print -quit)" ]; then
  echo "worker is up to date ($wasm)"
  exit 0
fi
worker-build --release >/tmp/equilibrium-worker-build.log 2>&1 || {
  cat /tmp/equilibrium-worker-build.log >&2
  exit 1
}
raw=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
echo "worker wasm: $raw bytes raw, $gz bytes gzipped (limit 1 MiB gzipped target, 3 MiB free plan)"
