#!/usr/bin/env bash
# A local cluster, one command: three NATS servers (JetStream, routed),
# PostgreSQL, three origins in cluster mode sharing four regions, the edge
# worker under `wrangler dev`, the simulator feeding the first origin, and
# the live map. Prints which origin owns which region, then keeps printing
# it every 30 s; ctrl-c stops everything.
#
# Try: kill -9 the origin that owns sf (its pid is printed) and watch
# another take it over within the lease TTL (6 s) while the map keeps
# updating.
#
# Ports (override with env): EDGE_PORT=8787 MAP_PORT=8788 ORIGIN_PORTS="8790 8791 8792"
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
source scripts/stack.sh

EDGE_PORT="${EDGE_PORT:-8787}"
MAP_PORT="${MAP_PORT:-8788}"
read -r -a ORIGIN_PORTS <<< "${ORIGIN_PORTS:-8790 8791 8792}"
SIM_MINUTES="${SIM_MINUTES:-180}"
SIM_SPEEDUP="${SIM_SPEEDUP:-10}"
STATE="${EQ_STATE_DIR:-$ROOT/.wrangler/cluster}"
mkdir -p "$STATE"

stack_prepare

step "three NATS servers"
start_nats_cluster
note "$NATS_URLS"
step "PostgreSQL"
start_postgres
note "$PG_URL"

step "the edge worker (wrangler dev) on :$EDGE_PORT"
# Any origin takes the edge's events; the first one is named here.
start_edge "http://127.0.0.1:${ORIGIN_PORTS[0]}"

step "three origins on :${ORIGIN_PORTS[*]}"
NODES=(origin-a origin-b origin-c)
declare -A ORIGIN_PID
for i in 0 1 2; do
  node=${NODES[$i]}
  EQ_CONFIG=origin/origin.example.toml EQ_NODE_ID="$node" EQ_NATS_URLS="$NATS_URLS" \
    EQ_STREAM_REPLICAS=3 EQ_POSTGRES_URL="$PG_URL" EQ_EDGE_TOKEN="$ADMIN_TOKEN" \
    stack_start "$node" target/release/origin serve --listen "127.0.0.1:${ORIGIN_PORTS[$i]}" \
      --database "$STATE/$node.sqlite" --edge-url "http://127.0.0.1:$EDGE_PORT"
  ORIGIN_PID[$node]=$LAST_PID
done
for i in 0 1 2; do wait_http "${NODES[$i]}" "http://127.0.0.1:${ORIGIN_PORTS[$i]}/health"; done

# owners: which origin owns which region, from each origin's /health.
owners() {
  local i
  for i in 0 1 2; do
    curl -fsS -m 2 "http://127.0.0.1:${ORIGIN_PORTS[$i]}/health" 2>/dev/null \
      | python3 -c '
import json, sys
h = json.load(sys.stdin)["cluster"]
owned = ", ".join(r["region"] + ("" if r["ready"] else " (replaying)") for r in h["owned"]) or "-"
print("    %-9s pid %s :%s  owns %s" % (h["node"], sys.argv[1], sys.argv[2], owned))' \
        "${ORIGIN_PID[${NODES[$i]}]}" "${ORIGIN_PORTS[$i]}" \
      || echo "    ${NODES[$i]} :${ORIGIN_PORTS[$i]} not answering"
  done
}
# Members find each other within a lease round (2 s); let ownership settle.
sleep 5
step "which origin owns which region"
owners

step "serving the map on :$MAP_PORT"
stack_start map node web-demo/serve.mjs "$MAP_PORT"
wait_http map "http://127.0.0.1:$MAP_PORT/"

cat <<MSG

  Live surge map:  http://127.0.0.1:$MAP_PORT/?edge=http://127.0.0.1:$EDGE_PORT
  Origins:         http://127.0.0.1:${ORIGIN_PORTS[0]} :${ORIGIN_PORTS[1]} :${ORIGIN_PORTS[2]}  (/health shows
                   members and owned regions; reads need the reader token in
                   $STATE/origin-tokens)
  Logs:            $STATE/*.log

  The simulator plays a ${SIM_MINUTES}-minute evening at ${SIM_SPEEDUP}x through origin-a.
  Press ctrl-c to stop everything.

MSG
step "simulator (live mode)"
stack_start sim target/release/sim live --origin "http://127.0.0.1:${ORIGIN_PORTS[0]}" \
  --edge "http://127.0.0.1:$EDGE_PORT" --minutes "$SIM_MINUTES" --speedup "$SIM_SPEEDUP"
while true; do
  sleep 30
  step "owners at $(date +%H:%M:%S)"
  owners
done
