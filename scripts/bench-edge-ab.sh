#!/usr/bin/env bash
# Does a change make the estimate cheaper? Compares two builds of the worker
# in the same run: BEFORE (a revision, default HEAD) and the working tree.
# Usage: scripts/bench-edge-ab.sh [seconds per round, default 2] [cycles, default 20] [before revision, default HEAD]
#
# Both workers run at once under `wrangler dev` on the server CPU (each with
# its own state, the rate limits lifted, a grid pushed); only one is loaded
# at a time, at its runtime's own socket. A cycle is four adjacent rounds
# (body and estimate of each build, in rotating order), so each cycle's
# ratios are measured at nearly the same host speed (bench-edge.sh says why
# that matters here). Each estimate round is followed by a pause for its
# queued quote events to drain, so no round pays for the one before. Reported: each build's estimate/body (issue 15's
# target, >= 0.95) and the estimate's throughput after/before, medians of
# the cycles with quartiles.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
SECS="${1:-2}"
CYCLES="${2:-20}"
BEFORE="${3:-HEAD}"

source "$ROOT/scripts/edge-load.sh"
WORK="$(mktemp -d)"
trap 'stop_instances; rm -rf "$WORK"' EXIT
build_before_and_after "$BEFORE" "$WORK" ab-before

start_instance before "$WORK/before" "$WORK"
start_instance after "$ROOT" "$WORK"
LUA="$WORK/estimate.lua"
write_estimate_lua "$LUA"

# rps of one wrk round: run <port> <path>
run() {
  "${LOAD_CPU[@]}" wrk -t1 -c16 -d"${SECS}s" -s "$LUA" "http://127.0.0.1:$1$2" | awk '/^Requests\/sec/ {print $2}'
}
step "warm-up"
for label in before after; do
  port_var="RUNTIME_$label"
  run "${!port_var}" /health >/dev/null
  run "${!port_var}" /api/v1/pricing/estimate >/dev/null
done

step "$CYCLES cycles of four ${SECS}s rounds (body and estimate of each build, rotating order)"
ROWS="$WORK/rows"
: > "$ROWS"
rounds=("before /health" "before /api/v1/pricing/estimate" "after /health" "after /api/v1/pricing/estimate")
for c in $(seq 1 "$CYCLES"); do
  for i in 0 1 2 3; do
    read -r label path <<<"${rounds[$(((i + c) % 4))]}"
    port_var="RUNTIME_$label"
    rps=$(run "${!port_var}" "$path")
    echo "$c $label $path $rps" | tee -a "$ROWS"
    # An estimate round leaves its last second of quote events to the
    # queue (the linger, then the consumer, in the same workerd): let them
    # drain rather than charge them to the next round.
    case "$path" in *estimate) sleep 3 ;; esac
  done
done
python3 - "$ROWS" <<'PY'
import sys, statistics as st
by = {}
for line in open(sys.argv[1]):
    c, label, path, rps = line.split()
    by.setdefault(int(c), {})[(label, "estimate" in path)] = float(rps)
cycles = [d for d in by.values() if len(d) == 4]
def show(name, xs):
    q = st.quantiles(xs, n=4)
    print(f"{name:34} {st.median(xs):.2f} (quartiles {q[0]:.2f}-{q[2]:.2f})")
print(f"\nmedians of {len(cycles)} cycles, at each runtime's own socket:")
for label in ("before", "after"):
    show(f"estimate/body, {label}", [d[(label, True)] / d[(label, False)] for d in cycles])
show("estimate after/before", [d[("after", True)] / d[("before", True)] for d in cycles])
show("body after/before", [d[("after", False)] / d[("before", False)] for d in cycles])
PY
