#!/usr/bin/env bash
# What `wrangler dev` charges for a request body, whatever the worker does.
# Usage: scripts/bench-body-floor.sh [seconds per round=2] [connections=16] [cycles=20]
#
# Runs a minimal JavaScript worker (no wasm, no bindings) under `wrangler
# dev`, set up as bench-edge.sh sets up ours (server on CPU 0, wrk on CPU 1),
# and compares two handlers of it:
#   get:  GET /       → a small JSON answer;
#   post: POST /      → reads the body (the estimate benchmark's request,
#                       same bytes and headers), then the same small answer.
# Each is measured two ways: through wrangler's proxy (the port `wrangler
# dev` prints, which every test and bench-edge.sh use) and straight at the
# runtime workerd process behind it. `post/get` is then the best throughput
# ratio any handler that reads a JSON body can reach against a bodiless GET
# in this harness: the floor under the edge target (estimate ≥ 0.9 of
# GET /health). Cycles of adjacent short rounds, order rotating; medians and
# quartiles of the per-cycle ratios (see bench-edge.sh for why).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
SECS="${1:-2}"
CONNS="${2:-16}"
CYCLES="${3:-20}"
source "$ROOT/scripts/edge-load.sh"

bash "$ROOT/scripts/setup.sh" >/dev/null
ensure_load_tools

STATE="$(mktemp -d)"
cat > "$STATE/worker.js" <<'JS'
export default {
  async fetch(request) {
    let bytes = 0;
    if (request.method === "POST") bytes = (await request.arrayBuffer()).byteLength;
    return new Response(`{"status":"ok","bytes":${bytes}}`, {
      headers: { "content-type": "application/json" },
    });
  },
};
JS
compat=$(awk -F'"' '/^compatibility_date/ {print $2}' "$ROOT/wrangler.toml")
printf 'name = "body-floor"\nmain = "worker.js"\ncompatibility_date = "%s"\n' "$compat" > "$STATE/wrangler.toml"
PORT=$(free_port)
setsid "${SERVER_CPU[@]}" wrangler dev --config "$STATE/wrangler.toml" --ip 127.0.0.1 --port "$PORT" --persist-to "$STATE/state" \
  --show-interactive-dev-session=false --log-level error > "$STATE/wrangler.log" 2>&1 &
PID=$!
trap 'kill -- -"$PID" 2>/dev/null || true; rm -rf "$STATE"' EXIT
for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$PORT/" >/dev/null 2>&1 && break
  sleep 1
done
curl -fsS "http://127.0.0.1:$PORT/" >/dev/null || { cat "$STATE/wrangler.log" >&2; exit 1; }

find_runtime_port / '"status":"ok"'
LUA="$STATE/post.lua"
write_post_lua "$LUA" "$ESTIMATE_BODY"
got=$(curl -fsS -X POST -H 'content-type: application/json' --data "$ESTIMATE_BODY" "http://127.0.0.1:$PORT/")
[ "$got" = "{\"status\":\"ok\",\"bytes\":${#ESTIMATE_BODY}}" ] || { echo "unexpected answer: $got" >&2; exit 1; }
note "proxy on :$PORT, runtime on :$RUNTIME"

rps() { "${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${SECS}s" "$@" | awk '/^Requests\/sec/ {print $2}'; }
step "warm-up"
for p in "$PORT" "$RUNTIME"; do
  wrk -t2 -c"$CONNS" -d2s "http://127.0.0.1:$p/" >/dev/null
  wrk -t2 -c"$CONNS" -d2s -s "$LUA" "http://127.0.0.1:$p/" >/dev/null
done

step "$CYCLES cycles of ${SECS}s rounds (get/post × proxy/runtime, rotating), $CONNS connections"
ROWS="$STATE/rows"
names=(get-proxy post-proxy get-runtime post-runtime)
for c in $(seq 1 "$CYCLES"); do
  for i in 0 1 2 3; do
    h=${names[$(((i + c) % 4))]}
    case $h in
      get-proxy) v=$(rps "http://127.0.0.1:$PORT/") ;;
      post-proxy) v=$(rps -s "$LUA" "http://127.0.0.1:$PORT/") ;;
      get-runtime) v=$(rps "http://127.0.0.1:$RUNTIME/") ;;
      post-runtime) v=$(rps -s "$LUA" "http://127.0.0.1:$RUNTIME/") ;;
    esac
    echo "$c $h $v" | tee -a "$ROWS"
  done
done
python3 - "$ROWS" <<'PY'
import sys, statistics as st
by = {}
for line in open(sys.argv[1]):
    c, h, v = line.split()
    by.setdefault(c, {})[h] = float(v)
cy = [d for d in by.values() if len(d) == 4]
def ratio(a, b):
    xs = [d[a] / d[b] for d in cy]
    q = st.quantiles(xs, n=4)
    return f"{st.median(xs):.2f} (quartiles {q[0]:.2f}-{q[2]:.2f})"
def extra_us(a, b):
    xs = [1e6 / d[a] - 1e6 / d[b] for d in cy]
    return f"{st.median(xs):.0f} µs"
print()
for h in ("get-proxy", "post-proxy", "get-runtime", "post-runtime"):
    print(f"median {h:13} {st.median(d[h] for d in cy):8.0f} req/s")
print(f"\nmedians of {len(cy)} cycles:")
print(f"post/get through wrangler's proxy: {ratio('post-proxy', 'get-proxy')}   (the floor under estimate/trivial)")
print(f"post/get at the runtime directly:  {ratio('post-runtime', 'get-runtime')}")
print(f"server time a body adds per request: {extra_us('post-proxy', 'get-proxy')} through the proxy, {extra_us('post-runtime', 'get-runtime')} at the runtime")
print(f"get: runtime/proxy throughput {ratio('get-runtime', 'get-proxy')}")
PY
