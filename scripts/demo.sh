#!/usr/bin/env bash
# The whole thing, locally: the edge worker under `wrangler dev` (workerd),
# the origin, the market simulator in live mode feeding both, and the live
# surge map. Prints where to look; ctrl-c stops everything.
#
# Ports (override with env): EDGE_PORT=8787 ORIGIN_PORT=8790 MAP_PORT=8788
# SIM_MINUTES=180 (simulated) SIM_SPEEDUP=10 (simulated seconds per second)
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

EDGE_PORT="${EDGE_PORT:-8787}"
ORIGIN_PORT="${ORIGIN_PORT:-8790}"
MAP_PORT="${MAP_PORT:-8788}"
SIM_MINUTES="${SIM_MINUTES:-180}"
SIM_SPEEDUP="${SIM_SPEEDUP:-10}"
STATE="${EQ_STATE_DIR:-$ROOT/.wrangler/demo}"
mkdir -p "$STATE"

bash scripts/setup.sh

# Local secrets for wrangler dev: generated once, never committed.
if [ ! -f .dev.vars ]; then
  step "creating .dev.vars (local admin token and quote signing key)"
  {
    echo "ADMIN_TOKEN=\"$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')\""
    echo "QUOTE_SIGNING_KEYS=\"local1:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')\""
  } > .dev.vars
fi
ADMIN_TOKEN="$(sed -n 's/^ADMIN_TOKEN="\(.*\)"$/\1/p' .dev.vars)"
# The origin's producer and reader tokens: generated once per state
# directory, kept beside it (never committed).
if [ ! -f "$STATE/origin-tokens" ]; then
  {
    echo "EQ_PRODUCER_TOKENS=producer-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    echo "EQ_READER_TOKENS=reader-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  } > "$STATE/origin-tokens"
  chmod 600 "$STATE/origin-tokens"
fi
set -a; source "$STATE/origin-tokens"; set +a
export EQ_PRODUCER_TOKEN="$EQ_PRODUCER_TOKENS"

step "building the worker, the origin, the simulator and the map"
bash scripts/build-worker.sh
cargo build -q --release -p equilibrium-origin -p equilibrium-sim
bash web-demo/build.sh

PIDS=()
stop() {
  trap - INT TERM EXIT
  echo
  step "stopping"
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  note "stopped; logs in $STATE"
  exit 0
}
trap stop INT TERM EXIT
start() { # name, command...
  local name=$1; shift
  setsid "$@" > "$STATE/$name.log" 2>&1 &
  PIDS+=($!)
}
wait_http() { # name, url
  for i in $(seq 1 120); do
    curl -fsS "$2" >/dev/null 2>&1 && return 0
    [ $((i % 10)) -eq 0 ] && note "waiting for the $1 ($i s)..."
    sleep 1
  done
  echo "the $1 did not start; see $STATE/$1.log" >&2
  exit 1
}

step "starting the edge worker (wrangler dev) on :$EDGE_PORT"
start edge wrangler dev --ip 127.0.0.1 --port "$EDGE_PORT" --persist-to "$STATE/edge" \
  --show-interactive-dev-session=false --var "CORS_ORIGINS:http://127.0.0.1:$MAP_PORT"
wait_http edge "http://127.0.0.1:$EDGE_PORT/health"

step "starting the origin on :$ORIGIN_PORT (pushing to the edge)"
EQ_EDGE_TOKEN="$ADMIN_TOKEN" start origin target/release/origin serve \
  --listen "127.0.0.1:$ORIGIN_PORT" --database "$STATE/origin.sqlite" \
  --edge-url "http://127.0.0.1:$EDGE_PORT"
wait_http origin "http://127.0.0.1:$ORIGIN_PORT/health"

step "serving the map on :$MAP_PORT"
start map node web-demo/serve.mjs "$MAP_PORT"
wait_http map "http://127.0.0.1:$MAP_PORT/"

cat <<MSG

  Live surge map:  http://127.0.0.1:$MAP_PORT/?edge=http://127.0.0.1:$EDGE_PORT
  Edge API:        http://127.0.0.1:$EDGE_PORT  (OpenAPI: /openapi.json)
  Origin:          http://127.0.0.1:$ORIGIN_PORT  (/metrics, /openapi.json; reads need the
                   reader token in $STATE/origin-tokens, e.g.
                   curl -H "Authorization: Bearer \$EQ_READER_TOKENS" .../v1/analytics/least-efficient)
  Logs:            $STATE/*.log

  The simulator now plays a ${SIM_MINUTES}-minute evening at ${SIM_SPEEDUP}x (a concert
  lets out a third of the way in). Press ctrl-c to stop everything.

MSG
step "simulator (live mode)"
target/release/sim live --origin "http://127.0.0.1:$ORIGIN_PORT" --edge "http://127.0.0.1:$EDGE_PORT" \
  --minutes "$SIM_MINUTES" --speedup "$SIM_SPEEDUP"
note "the scenario is over; the stack keeps running until ctrl-c"
wait
