#!/usr/bin/env bash
# What each step of an estimate costs inside workerd, against what the whole
# estimate costs under load, in one run.
# Usage: scripts/probe-edge.sh [repetitions per call, default 20000] [rounds, default 5] [steps]
#   steps: a space-separated subset of edge/src/probe.rs's STEPS (default:
#   the estimate's and the baseline's; `report100` is the report with the
#   old messages of 100 events); the summed comparison needs the default.
#   (cold calls repeat a tenth as often; far below the default, workerd's
#   background CPU in each 2.5 s settling window outweighs the steps)
#
# HTTP-level rounds (bench-edge.sh) scatter by ±5 % and cannot split the
# estimate's extra cost into its steps. Here a bench build of the worker
# (feature `probes`, never shipped) repeats one step of the estimate N times
# inside one request (`POST /__probe/{step}?n=N`, edge/src/probe.rs), and
# workerd's CPU time (every thread, /proc/<pid>/task/*/schedstat, in ns) is
# read around it, after the step's waitUntil work and the queue's delivery
# have settled; a call with n=1 is subtracted. That is each step's cost with
# the isolate and the CPU's caches warm: a lower bound of what it costs a
# real request. Cold: each repetition first evicts the caches (writes 16 MiB,
# edge/src/probe.rs), and the step `nothing` (the eviction alone) is
# subtracted. The same run also loads each handler (wrk, 16 connections,
# the server on CPU 0) and reads workerd's CPU per request, so the steps
# can be set against what the estimate costs a real request.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
N="${1:-20000}"
ROUNDS="${2:-5}"
NC=$((N / 10))
[ "$N" -ge 10 ] || { echo "repetitions per call must be at least 10 (cold calls run a tenth)" >&2; exit 2; }
# The quote events' linger (1 s) and the queue consumer's batch timeout
# (1 s) pass within it, so a step's deferred work is counted to it.
SETTLE=2.5

source "$ROOT/scripts/edge-load.sh"
EQ_BENCH_FEATURES=probes start_load_worker
find_runtime_port /health '"status":"ok"'
read -r -a STEPS <<<"${3:-limit await parse region inputs price report answer baseline-answer}"

# CPU ns of one probe call (and what it left to settle):
# probe_ns <step> <n> [cold: 0 or 1]
probe_ns() {
  local before after
  before=$(workerd_ns)
  curl -fsS -o "$STATE/probe.out" -X POST "http://127.0.0.1:$RUNTIME/__probe/$1?n=$2&cold=${3:-0}" \
    -H 'content-type: application/json' -d "$ESTIMATE_BODY" || {
    echo "probe $1 failed: $(cat "$STATE/probe.out" 2>/dev/null)" >&2
    exit 1
  }
  # serde_json sorts the keys: {"cold":..,"n":..,"step":..}.
  grep -qF "\"n\":$2,\"step\":\"$1\"" "$STATE/probe.out" || { echo "probe $1: unexpected answer $(cat "$STATE/probe.out")" >&2; exit 1; }
  sleep "$SETTLE"
  after=$(workerd_ns)
  echo $((after - before))
}

# CPU ns per request of 3 s of load (and its settling) on <path>.
load_ns() {
  local before after out requests
  before=$(workerd_ns)
  out=$("${LOAD_CPU[@]}" wrk -t1 -c16 -d3s -s "$LUA" "http://127.0.0.1:$RUNTIME$1")
  sleep "$SETTLE"
  after=$(workerd_ns)
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  grep -q "Non-2xx" <<<"$out" && { echo "load on $1 got non-2xx answers" >&2; exit 1; }
  [ "${requests:-0}" -gt 0 ] || { echo "load on $1 completed no request: $out" >&2; exit 1; }
  echo $(((after - before) / requests))
}

step "warm-up (each step twice with n=$N, once cold, each handler 3 s)"
for s in "${STEPS[@]}"; do
  probe_ns "$s" "$N" >/dev/null
  probe_ns "$s" "$N" >/dev/null
  probe_ns "$s" "$NC" 1 >/dev/null
done
load_ns /health >/dev/null
load_ns /api/v1/pricing/estimate >/dev/null

step "$ROUNDS rounds: each step warm (n=1 and n=$N) and cold (n=$NC), then each handler under load"
ROWS="$STATE/rows"
: > "$ROWS"
for r in $(seq 1 "$ROUNDS"); do
  line="round $r:"
  evict=$(probe_ns nothing "$NC" 1)
  for s in "${STEPS[@]}"; do
    one=$(probe_ns "$s" 1)
    many=$(probe_ns "$s" "$N")
    cold=$(probe_ns "$s" "$NC" 1)
    warm_us=$(python3 -c "print(f'{($many - $one) / ($N - 1) / 1e3:.2f}')")
    cold_us=$(python3 -c "print(f'{($cold - $evict) / $NC / 1e3:.2f}')")
    echo "$r warm:$s $warm_us" >> "$ROWS"
    echo "$r cold:$s $cold_us" >> "$ROWS"
    line="$line $s=$warm_us/$cold_us"
  done
  for h in /health /api/v1/pricing/estimate; do
    ns=$(load_ns "$h")
    us=$(python3 -c "print(f'{$ns / 1e3:.1f}')")
    echo "$r load:$h $us" >> "$ROWS"
    line="$line $h=$us"
  done
  note "$line (us, warm/cold)"
done

python3 - "$ROWS" "${STEPS[@]}" <<'PY'
import statistics as st, sys
steps = sys.argv[2:]
rows = {}
for line in open(sys.argv[1]):
    r, k, v = line.split()
    rows.setdefault(k, []).append(float(v))
med = {k: st.median(v) for k, v in rows.items()}
def show(k):
    v = sorted(rows[k])
    return f"{med[k]:7.2f} ({v[0]:.2f}-{v[-1]:.2f})"
print(f"\nmedians of {len(rows['warm:' + steps[0]])} rounds, workerd CPU per call in us (range):")
print(f"  {'step':16} {'warm':>22} {'cold':>22}")
for k in steps:
    print(f"  {k:16} {show('warm:' + k):>22} {show('cold:' + k):>22}")
body, est = med["load:/health"], med["load:/api/v1/pricing/estimate"]
print(f"\nunder load, workerd CPU per request: body {body:.0f} us, estimate {est:.0f} us, difference {est - body:.0f} us")
print(f"0.95 of the body's throughput allows {body * (1 / 0.95 - 1):.1f} us beyond it")
print(f"estimate/body from the CPU per request under load:     {body / est:.3f}")
needed = ["limit", "await", "parse", "region", "inputs", "price", "report", "answer", "baseline-answer"]
if not all(f"warm:{k}" in med for k in needed):
    sys.exit(0)
# The estimate waits for its limiter together with its body (one await, as
# the baseline's body read): its limit costs it the call less the await.
def extra(mode):
    m = lambda k: med[f"{mode}:{k}"]
    return (m("limit") - m("await")) + m("parse") + m("region") + m("inputs") + m("price") \
        + m("report") + (m("answer") - m("baseline-answer"))
print(f"the estimate's steps beyond the baseline's, summed: warm {extra('warm'):.1f} us, cold {extra('cold'):.1f} us")
print(f"estimate/body if the estimate cost its warm steps only: {body / (body + extra('warm')):.3f}")
PY
