#!/usr/bin/env bash
# The whole thing, locally: the edge worker under `wrangler dev` (workerd),
# the origin, the market simulator in live mode feeding both, and the live
# surge map. Prints where to look; ctrl-c stops everything.
#
# One time frame: the origin runs on the simulator's clock
# (EQ_SIMULATED_CLOCK=true; the simulator sets it every tick), so its
# windows, TTLs and ticks are simulated time at any speed-up, and it prices
# the simulator's region in the simulator's cells (origin/demo.toml).
# Simulated time starts a day ahead of the wall clock; when the evening
# ends the origin's clock stops and the map keeps its last grid.
#
# Ports (override with env): EDGE_PORT=8787 ORIGIN_PORT=8790 MAP_PORT=8788
# SIM_MINUTES=180 (simulated) SIM_SPEEDUP=10 (simulated seconds per second)
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
source scripts/stack.sh

EDGE_PORT="${EDGE_PORT:-8787}"
ORIGIN_PORT="${ORIGIN_PORT:-8790}"
MAP_PORT="${MAP_PORT:-8788}"
SIM_MINUTES="${SIM_MINUTES:-180}"
SIM_SPEEDUP="${SIM_SPEEDUP:-10}"
STATE="${EQ_STATE_DIR:-$ROOT/.wrangler/demo}"
mkdir -p "$STATE"

stack_prepare

step "starting the edge worker (wrangler dev) on :$EDGE_PORT"
# The worker's events queue posts to the origin, started next.
start_edge "http://127.0.0.1:$ORIGIN_PORT"

step "starting the origin on :$ORIGIN_PORT (pushing to the edge)"
EQ_EDGE_TOKEN="$ADMIN_TOKEN" EQ_SIMULATED_CLOCK=true EQ_CONFIG=origin/demo.toml \
  EQ_REGISTRY="$ROOT/config/regions.json" \
  stack_start origin target/release/origin serve \
  --listen "127.0.0.1:$ORIGIN_PORT" --database "$STATE/origin.sqlite" \
  --edge-url "http://127.0.0.1:$EDGE_PORT"
wait_http origin "http://127.0.0.1:$ORIGIN_PORT/health"

step "serving the map on :$MAP_PORT"
stack_start map node web-demo/serve.mjs "$MAP_PORT"
wait_http map "http://127.0.0.1:$MAP_PORT/"

cat <<MSG

  Live surge map:  http://127.0.0.1:$MAP_PORT/?edge=http://127.0.0.1:$EDGE_PORT
  Edge API:        http://127.0.0.1:$EDGE_PORT  (OpenAPI: /openapi.json)
  Origin:          http://127.0.0.1:$ORIGIN_PORT  (/metrics, /openapi.json; reads need the
                   reader token in $STATE/origin-tokens, e.g.
                   curl -H "Authorization: Bearer \$EQ_READER_TOKENS" .../v1/analytics/least-efficient)
  Logs:            $STATE/*.log

  The simulator now plays a ${SIM_MINUTES}-minute evening at ${SIM_SPEEDUP}x (a concert
  lets out 44 % of the way in), and the origin prices it on the simulator's
  clock. Press ctrl-c to stop everything.

MSG
step "simulator (live mode)"
EQ_READER_TOKEN="$EQ_READER_TOKENS" target/release/sim live \
  --origin "http://127.0.0.1:$ORIGIN_PORT" --edge "http://127.0.0.1:$EDGE_PORT" \
  --minutes "$SIM_MINUTES" --speedup "$SIM_SPEEDUP" --drive-origin-clock
note "the scenario is over; the stack keeps running until ctrl-c"
wait
