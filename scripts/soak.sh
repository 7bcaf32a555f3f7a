#!/usr/bin/env bash
# A bounded soak on loopback: estimates at fixed concurrency
# (scripts/load.mjs) while the
# simulator streams locations and demand into the origin, which pushes a
# grid to the edge every tick. Reports errors, latency and the memory (RSS)
# of the origin and workerd at the start and the end.
# Usage: scripts/soak.sh [minutes, default 3] [connections, default 8]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
MINUTES="${1:-3}"
CONNS="${2:-8}"
bash scripts/setup.sh >/dev/null
bash scripts/build-worker.sh >/dev/null
cargo build -q --release -p equilibrium-origin -p equilibrium-sim

STATE="$(mktemp -d)"
CONFIG="$ROOT/wrangler.bench.toml"
sed -e 's/limit = [0-9]*/limit = 100000000/' wrangler.toml > "$CONFIG"
EDGE=$(free_port); ORIGIN=$(free_port)
TOKEN=soak-admin-token
setsid wrangler dev --config "$CONFIG" --ip 127.0.0.1 --port "$EDGE" --persist-to "$STATE/edge" \
  --show-interactive-dev-session=false --log-level error \
  --var "ADMIN_TOKEN:$TOKEN" --var "QUOTE_SIGNING_KEYS:s1:soak-signing-key-0123456789" \
  --var "DISPATCH_TOKEN:soak-dispatch-token-0123" --var "ORIGIN_URL:http://127.0.0.1:$ORIGIN" \
  --var "ORIGIN_TOKEN:soak-producer-token-0123" > "$STATE/edge.log" 2>&1 &
EPID=$!
export EQ_PRODUCER_TOKENS=soak-producer-token-0123 EQ_READER_TOKENS=soak-reader-token-0123
export EQ_PRODUCER_TOKEN=$EQ_PRODUCER_TOKENS EQ_DISPATCH_TOKEN=soak-dispatch-token-0123
EQ_EDGE_TOKEN=$TOKEN setsid target/release/origin serve --listen "127.0.0.1:$ORIGIN" --database "$STATE/o.sqlite" \
  --edge-url "http://127.0.0.1:$EDGE" > "$STATE/origin.log" 2>&1 &
OPID=$!
cleanup() { kill -- -"$EPID" -"$OPID" 2>/dev/null || true; rm -rf "$STATE" "$CONFIG"; }
trap cleanup EXIT
for _ in $(seq 1 120); do curl -fsS "http://127.0.0.1:$EDGE/health" >/dev/null 2>&1 && curl -fsS "http://127.0.0.1:$ORIGIN/health" >/dev/null 2>&1 && break; sleep 1; done

rss_kb() { # total RSS of a process group's processes matching a name
  ps -o rss=,comm= -g "$(ps -o pgid= "$1" | tr -d ' ')" | awk -v n="$2" '$2 ~ n {s += $1} END {print s + 0}'
}
step "warm-up: 30 s of streaming, then 60 s of load"
setsid target/release/sim live --origin "http://127.0.0.1:$ORIGIN" --edge "http://127.0.0.1:$EDGE" \
  --minutes 100000 --speedup 30 > "$STATE/sim.log" 2>&1 &
SPID=$!
trap 'kill -- -"$SPID" 2>/dev/null || true; cleanup' EXIT
source "$ROOT/scripts/edge-load.sh"
BODY="$STATE/estimate.json"
printf '%s' "$ESTIMATE_BODY" > "$BODY"
URL="http://127.0.0.1:$EDGE/api/v1/pricing/estimate"
# workerd under wrangler dev grows to a plateau (a few hundred MiB) in its
# first minute of load whatever the handler (measured with /health alone);
# memory is sampled after that warm-up.
node scripts/load.mjs "$URL" "$CONNS" 60 "$BODY" >/dev/null
step "soak: ${MINUTES} min of estimates at $CONNS connections, grids pushed every tick"
node scripts/load.mjs "$URL" "$CONNS" $((MINUTES * 60)) "$BODY" > "$STATE/load.json" &
LOAD=$!
samples=""
while kill -0 "$LOAD" 2>/dev/null; do
  samples="$samples $(( $(rss_kb "$OPID" origin) / 1024 ))/$(( $(rss_kb "$EPID" workerd) / 1024 ))"
  sleep 30
done
wait "$LOAD" || true
python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print("{requests} estimates in {seconds} s ({rps} req/s); latency p50 {p50_ms} ms, p99 {p99_ms} ms, max {max_ms} ms".format(**r))
print("  non-2xx responses: {non2xx}, failed requests: {errors}".format(**r))' "$STATE/load.json"
m() { curl -fsS "http://127.0.0.1:$ORIGIN/metrics" | awk -v n="$1" '$1 == n {print $2}'; }
echo "origin: $(m equilibrium_ingest_locations_total) locations ingested, $(m equilibrium_push_total) grid pushes delivered, $(m equilibrium_push_failures_total) push attempts failed (retried)"
echo "memory every 30 s, MiB (origin/workerd):$samples"
