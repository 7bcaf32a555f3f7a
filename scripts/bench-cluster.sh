#!/usr/bin/env bash
# The origin cluster on this machine, against a single node in the same run:
#   1. ingest: HTTP NDJSON into one origin (SQLite) vs into three cluster
#      members publishing to a 3-node JetStream cluster (R3, file storage);
#   2. replay: a new member taking a region over replays its stream;
#   3. failover: kill -9 of the owning origin process, KILLS times, with the
#      default lease TTL (6 s): time until another origin owns the region
#      with its replay caught up (median and max).
# Usage: scripts/bench-cluster.sh [http seconds, default 10] [kills, default 10]
# Everything runs on loopback with temporary state, and is stopped at exit.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
SECS="${1:-10}"
KILLS="${2:-10}"
bash scripts/setup.sh >/dev/null

WORK="$(mktemp -d)"
STATE="$WORK"
source scripts/stack.sh
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  stop_stack
  rm -rf "$WORK"
}
trap cleanup EXIT

step "3 NATS servers (JetStream, routed) on loopback"
start_nats_cluster
URLS="$NATS_URLS"
note "$URLS"

step "ingest and replay (cargo bench -p equilibrium-origin --bench cluster)"
result=$(EQ_NATS_URLS="$URLS" EQ_STREAM_REPLICAS=3 EQ_BENCH_HTTP_SECONDS="$SECS" \
  cargo bench -q -p equilibrium-origin --bench cluster 2>"$WORK/bench.log" | tail -n 1) \
  || { cat "$WORK/bench.log" >&2; exit 1; }
echo "$result"

step "failover: $KILLS kills of the owning origin (lease TTL 6 s, the default)"
cargo build -q --release -p equilibrium-origin --bin origin
BIN="$ROOT/target/release/origin"
declare -A PORT PID
start_origin() {
  local node=$1
  PORT[$node]=${PORT[$node]:-$(free_port)}
  EQ_NATS_URLS="$URLS" EQ_NODE_ID="$node" EQ_STREAM_REPLICAS=3 \
    EQ_PRODUCER_TOKENS=bench-producer-token-0123 EQ_READER_TOKENS=bench-reader-token-0123 \
    EQ_TICK_SECONDS=1 RUST_LOG=info \
    "$BIN" serve --listen "127.0.0.1:${PORT[$node]}" --database "$WORK/$node.sqlite" \
    >> "$WORK/$node.log" 2>&1 &
  PID[$node]=$!
  PIDS+=($!)
  for _ in $(seq 1 300); do curl -fsS "http://127.0.0.1:${PORT[$node]}/health" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "origin $node did not start" >&2; cat "$WORK/$node.log" >&2; exit 1
}
# The node owning sf with its replay caught up, or nothing.
owner() {
  local node
  for node in origin-a origin-b origin-c; do
    [ -n "${PID[$node]:-}" ] || continue
    if curl -fsS -m 2 "http://127.0.0.1:${PORT[$node]}/health" 2>/dev/null \
        | python3 -c 'import json,sys; h=json.load(sys.stdin); sys.exit(0 if any(r["region"]=="sf" and r["ready"] for r in h.get("cluster",{}).get("owned",[])) else 1)'; then
      echo "$node"; return
    fi
  done
}
wait_owner() {
  local o=""
  for _ in $(seq 1 1200); do o=$(owner); [ -n "$o" ] && { echo "$o"; return; }; sleep 0.05; done
  echo "no owner of sf for 60 s; the origins say:" >&2
  for n in origin-a origin-b origin-c; do
    echo "--- $n: $(curl -fsS -m 2 "http://127.0.0.1:${PORT[$n]}/health" 2>&1)" >&2
    tail -n 20 "$WORK/$n.log" >&2
  done
  exit 1
}
for n in origin-a origin-b origin-c; do start_origin "$n"; done
TIMES="$WORK/failover"
: > "$TIMES"
for k in $(seq 1 "$KILLS"); do
  # Settled: the rendezvous owner holds sf.
  sleep 3
  victim=$(wait_owner)
  kill -9 "${PID[$victim]}"
  unset "PID[$victim]"
  t0=$(date +%s%N)
  taker=$(wait_owner)
  t1=$(date +%s%N)
  ms=$(( (t1 - t0) / 1000000 ))
  echo "$ms" >> "$TIMES"
  printf '    kill %2d: %s owned sf; %s took over in %5d ms\n' "$k" "$victim" "$taker" "$ms"
  start_origin "$victim"
done

python3 - "$result" "$TIMES" <<'PY'
import json, statistics as st, sys
r = json.loads(sys.argv[1])
t = [int(x) for x in open(sys.argv[2]) if x.strip()]
print()
print(f"single-node HTTP ingest:      {r['single_events_per_s']:>12,.0f} events/s")
print(f"cluster HTTP ingest (3 x R{r['replicas']}): {r['cluster_events_per_s']:>12,.0f} events/s   ratio {r['ratio']:.2f}x  (goal >= 1,000,000 aggregate and >= 0.5x)")
print(f"replay of {r['replayed_events']:,} events: {r['replay_ms']} ms = {r['replay_ms_per_million']:,.0f} ms per million  (goal <= 1,000)")
print(f"failover over {len(t)} kills: median {st.median(t):,.0f} ms, max {max(t):,} ms  (lease TTL 6 s)")
PY
