#!/usr/bin/env bash
# Runs every fuzz target (cargo fuzz, libFuzzer) for a bounded time.
# cargo-fuzz needs nightly flags; this machine has one stable toolchain, so
# RUSTC_BOOTSTRAP=1 lets stable rustc accept them (the sanitizer is off:
# these targets are memory-safe Rust; the fuzzers look for panics and
# broken invariants). Usage: scripts/fuzz.sh [seconds per target, default 20]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT/fuzz"
SECS="${1:-20}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --version 0.13.2 --locked
export RUSTC_BOOTSTRAP=1
step "building the fuzz targets"
cargo fuzz build -O --sanitizer none
for target in admin_value estimate_request experiment_config grid_push ndjson_ingest quote_token; do
  step "fuzzing $target for ${SECS}s"
  mkdir -p "corpus/$target"
  # admin_value: its first byte picks the key (0: regions); the shipped
  # registry seeds it, so the fuzzer starts from boundaries that parse.
  if [ "$target" = admin_value ] && [ ! -e corpus/admin_value/seed-regions ]; then
    { printf '\000'; cat "$ROOT/config/regions.json"; } > corpus/admin_value/seed-regions
  fi
  log="$(mktemp)"
  if ! cargo fuzz run -O --sanitizer none "$target" "corpus/$target" -- \
      -max_total_time="$SECS" -print_final_stats=1 > "$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz target $target failed; the crashing input is under fuzz/artifacts/$target" >&2
    exit 1
  fi
  grep -E '^Done|stat::number_of_executed_units' "$log"
  rm -f "$log"
done
