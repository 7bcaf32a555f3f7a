#!/usr/bin/env bash
# A quote's latency when nothing about its region is cached: the first
# estimate in a region this isolate and this location have never priced,
# so every input is read (grid: location cache, KV, the zone object; the
# region caps and emergency cap; the tariff). Compares two builds of the
# worker in the same run: BEFORE (default d27ff18, the last commit that
# read those inputs one after another) and the working tree (the desk's
# inputs read concurrently).
# Usage: scripts/bench-cold-quote.sh [regions, default 40] [before revision, default d27ff18]
#
# Both workers run at once under `wrangler dev` (each with its own state),
# requests go to each runtime's own socket (no proxy), alternating which
# worker is asked first. Each region gets a cold quote, then a warm one
# (everything cached) for reference. Locally KV, the Cache API and Durable
# Objects are in-process stores answering in well under a millisecond, so
# this measures the reads' fixed costs (the JS promise round trips), not a
# production KV miss (tens of milliseconds each, where concurrency saves
# the most).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
REGIONS="${1:-40}"
BEFORE="${2:-d27ff18}"

source "$ROOT/scripts/edge-load.sh"
WORK="$(mktemp -d)"
trap 'stop_instances; rm -rf "$WORK"' EXIT
build_before_and_after "$BEFORE" "$WORK" cold-before

# Both on the server CPU, limits lifted (edge-load.sh's start_instance).
start_instance before "$WORK/before" "$WORK"
start_instance after "$ROOT" "$WORK"

# quote <port> <region>: seconds for one estimate.
quote() {
  local body=${ESTIMATE_BODY%\}}
  curl -s -o /dev/null -w '%{time_total} %{http_code}\n' -X POST \
    -H 'content-type: application/json' \
    -d "$body,\"region\":\"$2\"}" "http://127.0.0.1:$1/api/v1/pricing/estimate"
}

step "$REGIONS regions, one cold and one warm quote each, per build"
ROWS="$WORK/rows"
: > "$ROWS"
# A warm-up region per build, so the first cold figure is not the isolate's
# own start.
quote "$RUNTIME_before" warmup >/dev/null
quote "$RUNTIME_after" warmup >/dev/null
for i in $(seq 1 "$REGIONS"); do
  order=(before after)
  [ $((i % 2)) = 0 ] && order=(after before)
  for label in "${order[@]}"; do
    port_var="RUNTIME_$label"
    region="cold-$i"
    cold=$(quote "${!port_var}" "$region")
    warm=$(quote "${!port_var}" "$region")
    echo "$label $cold $warm" >> "$ROWS"
  done
done
python3 - "$ROWS" <<'PY'
import sys, statistics as st
rows = {}
bad = 0
for line in open(sys.argv[1]):
    label, cold, code1, warm, code2 = line.split()
    bad += (code1 != "200") + (code2 != "200")
    rows.setdefault(label, []).append((float(cold) * 1e3, float(warm) * 1e3))
def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round((len(xs) - 1) * p))]
print(f"\n{'build':8} {'cold p50':>9} {'cold p90':>9} {'warm p50':>9} {'warm p90':>9}   (ms, {len(rows['after'])} regions)")
for label in ("before", "after"):
    c = [r[0] for r in rows[label]]
    w = [r[1] for r in rows[label]]
    print(f"{label:8} {q(c,.5):9.2f} {q(c,.9):9.2f} {q(w,.5):9.2f} {q(w,.9):9.2f}")
b = st.median(r[0] for r in rows["before"])
a = st.median(r[0] for r in rows["after"])
print(f"\ncold quote p50 after/before: {a / b:.2f}")
print(f"non-200 answers: {bad}")
PY
