#!/usr/bin/env bash
# What each step of an estimate costs under load: the estimate cut short
# after each of its steps, loaded in turn, workerd's CPU per request read
# for each.
# Usage: scripts/probe-edge-load.sh [seconds per round, default 3] [cycles, default 8] [stages]
#   stages: a space-separated subset of edge/src/probe.rs's STAGES, in
#   their order (default all of them); each step is then the cost of the
#   steps since the stage before.
#
# scripts/probe-edge.sh times each step repeated inside one request, warm
# and cold; what a step costs a real request under load lies between the
# two. Here a bench build of the worker (feature `probes`, never shipped)
# answers `POST /__upto/{stage}` with the estimate's own steps up to that
# stage (edge/src/probe.rs): body (read and checked as the baseline does),
# limit (the address limiter with it), parse (and the user limiter, which
# the benchmark's body, naming no user, skips), inputs, price, event,
# report100, report, answer (the whole estimate). `event` encodes the
# report's event and adds it to a batcher of its own, never sent;
# `report100` is the report with the old messages of 100 events instead
# of 64 KB (list it before `report`). Each cycle loads every stage for the
# same seconds
# (wrk, 16 connections, the server on CPU 0), in an order rotating from
# cycle to cycle, and reads workerd's CPU time (every thread,
# /proc/<pid>/task/*/schedstat) over the round and its settling (the quote
# events' linger and the queue's delivery); a step's cost under load is the
# difference between its stage and the one before, per cycle, median over
# cycles. The real handlers, `POST /health` and the estimate, are loaded
# in the same cycles as a check that the stages measure them.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
SECS="${1:-3}"
CYCLES="${2:-8}"
SETTLE=2.5

source "$ROOT/scripts/edge-load.sh"
EQ_BENCH_FEATURES=probes start_load_worker
find_runtime_port /health '"status":"ok"'
read -r -a STAGES <<<"${3:-body limit parse inputs price event report100 report answer}"
PATHS=()
for s in "${STAGES[@]}"; do PATHS+=("/__upto/$s"); done
PATHS+=(/health /api/v1/pricing/estimate)

# "<CPU ns per request> <requests per second>" of one round on <path>.
load_round() {
  local before after out requests rps
  before=$(workerd_ns)
  out=$("${LOAD_CPU[@]}" wrk -t1 -c16 -d"${SECS}s" -s "$LUA" "http://127.0.0.1:$RUNTIME$1")
  sleep "$SETTLE"
  after=$(workerd_ns)
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  grep -q "Non-2xx" <<<"$out" && { echo "load on $1 got non-2xx answers" >&2; exit 1; }
  [ "${requests:-0}" -gt 0 ] || { echo "load on $1 completed no request: $out" >&2; exit 1; }
  echo "$(((after - before) / requests)) $rps"
}

for p in "${PATHS[@]}"; do
  out=$(curl -fsS -X POST "http://127.0.0.1:$RUNTIME$p" -H 'content-type: application/json' -d "$ESTIMATE_BODY") || {
    echo "$p failed" >&2
    exit 1
  }
  case "$p" in
    */answer | */estimate) grep -qF '"quote_token"' <<<"$out" || { echo "$p: no quote: $out" >&2; exit 1; } ;;
    *) grep -qF '"bytes":' <<<"$out" || { echo "$p: not the baseline's answer: $out" >&2; exit 1; } ;;
  esac
done

step "warm-up (each path ${SECS} s)"
for p in "${PATHS[@]}"; do load_round "$p" >/dev/null; done

step "$CYCLES cycles of ${SECS} s rounds on ${#PATHS[@]} paths, rotating order"
ROWS="$STATE/rows"
: > "$ROWS"
for c in $(seq 1 "$CYCLES"); do
  line="cycle $c:"
  for i in $(seq 0 $((${#PATHS[@]} - 1))); do
    p=${PATHS[$(((i + c) % ${#PATHS[@]}))]}
    read -r ns rps < <(load_round "$p")
    echo "$c $p $ns $rps" >> "$ROWS"
    line="$line ${p##*/}=$((ns / 1000))us"
  done
  note "$line"
done

python3 - "$ROWS" "${STAGES[@]}" <<'PY'
import statistics as st, sys
rows, stages = sys.argv[1], sys.argv[2:]
by = {}
for line in open(rows):
    c, p, ns, rps = line.split()
    by.setdefault(int(c), {})[p] = (float(ns) / 1e3, float(rps))
cycles = list(by.values())
def med(f):
    v = sorted(f(d) for d in cycles)
    return st.median(v), v[0], v[-1]
def fmt(m):
    return f"{m[0]:7.1f} ({m[1]:.1f} to {m[2]:.1f})"
print(f"\nmedians of {len(cycles)} cycles, workerd CPU per request in us (range):")
prev = None
for s in stages:
    p = f"/__upto/{s}"
    line = f"  upto {s:8} {fmt(med(lambda d: d[p][0]))}"
    if prev:
        line += f"   step {fmt(med(lambda d: d[p][0] - d[prev][0]))}"
    print(line)
    prev = p
for p in ("/health", "/api/v1/pricing/estimate"):
    print(f"  {p:13} {fmt(med(lambda d: d[p][0]))}")
e = med(lambda d: d["/api/v1/pricing/estimate"][0] - d["/health"][0])
first, last = f"/__upto/{stages[0]}", f"/__upto/{stages[-1]}"
u = med(lambda d: d[last][0] - d[first][0])
print(f"\nestimate - body (the real handlers): {fmt(e)} us")
print(f"upto/{stages[-1]} - upto/{stages[0]} (the stages): {fmt(u)} us")
print(f"0.95 of the body's throughput allows {med(lambda d: d['/health'][0])[0] * (1 / 0.95 - 1):.1f} us beyond it")
r = med(lambda d: d["/api/v1/pricing/estimate"][1] / d["/health"][1])
print(f"throughput estimate/body @runtime: {r[0]:.3f} ({r[1]:.3f} to {r[2]:.3f})")
PY
