#!/usr/bin/env bash
# The demo. Today it runs the edge worker under `wrangler dev` (workerd)
# with local state, seeds one sample surge grid through the real admin
# push, and shows a quote. The origin, the simulator and the map are not
# built yet (see the open issues); this script says so rather than fake them.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

PORT="${EDGE_PORT:-8787}"
STATE="${EQ_STATE_DIR:-$ROOT/.wrangler/demo-state}"

bash scripts/setup.sh

# Local secrets for wrangler dev: generated once, never committed.
if [ ! -f .dev.vars ]; then
  step "creating .dev.vars (local admin token and quote signing key)"
  {
    echo "ADMIN_TOKEN=\"$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')\""
    echo "QUOTE_SIGNING_KEYS=\"local1:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')\""
  } > .dev.vars
fi
# shellcheck disable=SC1091
ADMIN_TOKEN="$(sed -n 's/^ADMIN_TOKEN="\(.*\)"$/\1/p' .dev.vars)"

step "building the worker"
bash scripts/build-worker.sh

step "starting the worker: wrangler dev on http://127.0.0.1:$PORT (state in $STATE)"
mkdir -p "$STATE"
wrangler dev --ip 127.0.0.1 --port "$PORT" --persist-to "$STATE" \
  --show-interactive-dev-session=false > "$STATE/wrangler.log" 2>&1 &
WRANGLER_PID=$!
trap 'echo; step "stopping"; kill $WRANGLER_PID 2>/dev/null; wait $WRANGLER_PID 2>/dev/null; exit 0' INT TERM

for i in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  if ! kill -0 $WRANGLER_PID 2>/dev/null; then echo "wrangler dev exited; see $STATE/wrangler.log" >&2; exit 1; fi
  [ $((i % 10)) -eq 0 ] && note "waiting for the worker ($i s)..."
  sleep 1
done

step "seeding a sample grid (one hot cell in San Francisco) through the admin push"
now=$(($(date +%s) * 1000))
gen=$(date +%s)
curl -fsS -X PUT "http://127.0.0.1:$PORT/admin/v1/grids/sf" \
  -H "authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' \
  -d "{\"format\":1,\"region\":\"sf\",\"level\":13,\"generation\":$gen,\"computed_at\":$now,\"cells\":[{\"cell\":\"8085809c\",\"multiplier\":1.8,\"supply\":3,\"demand\":11,\"trend\":\"increasing\"}]}"
echo

step "a quote from the edge"
curl -fsS -X POST "http://127.0.0.1:$PORT/api/v1/pricing/estimate" -H 'content-type: application/json' \
  -d '{"pickup_location":{"latitude":37.7749,"longitude":-122.4194},"dropoff_location":{"latitude":37.7849,"longitude":-122.4094},"vehicle_type":"standard"}'
echo

cat <<MSG

  Edge worker:   http://127.0.0.1:$PORT  (OpenAPI: /openapi.json)
  Worker log:    $STATE/wrangler.log
  Not built yet: the origin, the market simulator and the live map
                 (their issues are open); the grid above is a sample.

  Press ctrl-c to stop.
MSG
wait $WRANGLER_PID
