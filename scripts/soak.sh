#!/usr/bin/env bash
# A bounded soak on loopback: estimates at fixed concurrency (wrk) while the
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
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
bash scripts/build-worker.sh >/dev/null
cargo build -q --release -p equilibrium-origin -p equilibrium-sim

STATE="$(mktemp -d)"
CONFIG="$ROOT/wrangler.bench.toml"
sed -e 's/limit = [0-9]*/limit = 100000000/' wrangler.toml > "$CONFIG"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
EDGE=$(free_port); ORIGIN=$(free_port)
TOKEN=soak-admin-token
setsid wrangler dev --config "$CONFIG" --ip 127.0.0.1 --port "$EDGE" --persist-to "$STATE/edge" \
  --show-interactive-dev-session=false --log-level error \
  --var "ADMIN_TOKEN:$TOKEN" --var "QUOTE_SIGNING_KEYS:s1:soak-signing-key-0123456789" > "$STATE/edge.log" 2>&1 &
EPID=$!
EQ_EDGE_TOKEN=$TOKEN setsid target/release/origin serve --listen "127.0.0.1:$ORIGIN" --database "$STATE/o.sqlite" \
  --edge-url "http://127.0.0.1:$EDGE" > "$STATE/origin.log" 2>&1 &
OPID=$!
cleanup() { kill -- -"$EPID" -"$OPID" 2>/dev/null || true; rm -rf "$STATE" "$CONFIG"; }
trap cleanup EXIT
for _ in $(seq 1 120); do curl -fsS "http://127.0.0.1:$EDGE/health" >/dev/null 2>&1 && curl -fsS "http://127.0.0.1:$ORIGIN/health" >/dev/null 2>&1 && break; sleep 1; done

rss_kb() { # total RSS of a process group's processes matching a name
  ps -o rss=,comm= -g "$(ps -o pgid= "$1" | tr -d ' ')" | awk -v n="$2" '$2 ~ n {s += $1} END {print s + 0}'
}
step "warm-up (30 s of streaming before measuring memory)"
setsid target/release/sim live --origin "http://127.0.0.1:$ORIGIN" --edge "http://127.0.0.1:$EDGE" \
  --minutes 100000 --speedup 30 > "$STATE/sim.log" 2>&1 &
SPID=$!
trap 'kill -- -"$SPID" 2>/dev/null || true; cleanup' EXIT
sleep 30
o0=$(rss_kb "$OPID" origin); w0=$(rss_kb "$EPID" workerd)
LUA="$STATE/estimate.lua"
cat > "$LUA" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"pickup_location":{"latitude":37.7749,"longitude":-122.4194},"dropoff_location":{"latitude":37.7849,"longitude":-122.4094},"vehicle_type":"standard"}'
LUA
step "soak: ${MINUTES} min of estimates at $CONNS connections, grids pushed every tick"
out=$(wrk -t2 -c"$CONNS" -d"${MINUTES}m" --latency -s "$LUA" "http://127.0.0.1:$EDGE/api/v1/pricing/estimate")
o1=$(rss_kb "$OPID" origin); w1=$(rss_kb "$EPID" workerd)
echo "$out" | grep -E 'Requests/sec|requests in|Non-2xx|Socket errors|50%|99%'
pushes=$(curl -fsS "http://127.0.0.1:$ORIGIN/metrics" | awk '/^equilibrium_push_total/ {print $2}')
fails=$(curl -fsS "http://127.0.0.1:$ORIGIN/metrics" | awk '/^equilibrium_push_failures_total/ {print $2}')
locs=$(curl -fsS "http://127.0.0.1:$ORIGIN/metrics" | awk '/^equilibrium_ingest_locations_total/ {print $2}')
echo "origin: $locs locations ingested, $pushes grid pushes delivered, $fails push failures"
echo "memory (RSS): origin ${o0} KiB -> ${o1} KiB; workerd ${w0} KiB -> ${w1} KiB"
