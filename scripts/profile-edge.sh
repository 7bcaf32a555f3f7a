#!/usr/bin/env bash
# Where does a quote's CPU go? Profiles the worker's isolate (V8's sampling
# profiler, through wrangler dev's inspector) under the same load as
# bench-edge.sh, first on the baseline (POST /health, reading the estimate's
# body), then on the estimate, and prints microseconds per request by
# function, estimate minus baseline.
# Usage: scripts/profile-edge.sh [seconds per profile, default 8] [rows, default 30]
#
# The profiler itself slows the isolate (absolute figures run high) and the
# host's speed drifts; read the table for where time goes, and bench-edge.sh
# for how much. The raw profiles (target/profile/*.cpuprofile) open in
# Chrome DevTools → Performance.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
SECS="${1:-8}"
ROWS="${2:-30}"

source "$ROOT/scripts/edge-load.sh"
INSPECTOR=$(free_port)
start_load_worker --inspector-port "$INSPECTOR"
OUT="$ROOT/target/profile"
mkdir -p "$OUT"

# profile <name> <wrk args...>: load for SECS+2 s, profile SECS s of it.
profile() {
  local name=$1
  shift
  "${LOAD_CPU[@]}" wrk -t1 -c16 -d3s "$@" >/dev/null
  "${LOAD_CPU[@]}" wrk -t1 -c16 -d"$((SECS + 2))s" "$@" >"$STATE/$name.wrk" &
  local load=$!
  sleep 1
  node scripts/profile-edge.mjs "$INSPECTOR" "$SECS" "$OUT/$name.cpuprofile" >"$STATE/$name.json"
  wait "$load"
  note "$name: $(awk '/^Requests\/sec/ {print $2}' "$STATE/$name.wrk") req/s under the profiler; $OUT/$name.cpuprofile"
}

step "profiling ${SECS}s of each handler"
profile body -s "$LUA" "http://127.0.0.1:$PORT/health"
profile estimate -s "$LUA" "http://127.0.0.1:$PORT/api/v1/pricing/estimate"

python3 - "$STATE" "$SECS" "$ROWS" <<'PY'
import json, re, sys
state, secs, rows = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
def per_request(name):
    prof = json.load(open(f"{state}/{name}.json"))
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", open(f"{state}/{name}.wrk").read()).group(1))
    us = prof["interval_us"] / (rps * secs)  # microseconds per sample per request
    return ({k: v * us for k, v in prof["self"].items()},
            {k: v * us for k, v in prof["inclusive"].items()})
(ts, ti), (es, ei) = per_request("body"), per_request("estimate")
busy = lambda d: sum(v for k, v in d.items() if k != "(idle)")
print(f"\nisolate busy time per request (profiler on): body {busy(ts):.0f} us, estimate {busy(es):.0f} us")
for title, t, e in (("self time", ts, es), ("inclusive time", ti, ei)):
    print(f"\n{title}, us per request:     body  estimate  difference  function")
    keys = sorted((set(t) | set(e)) - {"(idle)"}, key=lambda k: -(e.get(k, 0) - t.get(k, 0)))
    for k in keys[:rows]:
        print(f"{'':20}{t.get(k, 0):8.1f}  {e.get(k, 0):8.1f}  {e.get(k, 0) - t.get(k, 0):+10.1f}  {k[:110]}")
PY
