#!/usr/bin/env bash
# Estimate throughput and latency of the worker in workerd, as a ratio
# against a trivial handler (GET /health) of the same worker, same run.
# Usage: scripts/bench-edge.sh [seconds per round, default 2] [connections, default 16] [pairs, default 30]
#
# The host's speed drifts by ±30 % from one second to the next (a shared VM:
# a fixed CPU loop takes 0.42-0.77 s here), so one long round per handler
# mostly measures the drift. Instead: many short rounds in adjacent pairs,
# ordered trivial-estimate, estimate-trivial, ... so neither handler always
# goes first; each pair gives a ratio measured at nearly the same host speed,
# and the median ratio over all pairs is the result (quartiles shown). Also
# reported: workerd's CPU time per request, from /proc.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
SECS="${1:-2}"
CONNS="${2:-16}"
PAIRS="${3:-30}"

bash scripts/setup.sh >/dev/null
if ! command -v wrk >/dev/null; then
  step "installing wrk (Debian)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
bash scripts/build-worker.sh

# The same worker and bindings, with the rate limits lifted: a load test
# from one address would otherwise measure the limiter's 429s.
CONFIG="$ROOT/wrangler.bench.toml"
if [ "${EQ_BENCH_NO_LIMITER:-0}" = 1 ]; then
  # Diagnostic: no rate-limit bindings at all (the worker then skips the check).
  python3 -c 'import re,sys; t=open("wrangler.toml").read(); print(re.sub(r"\[\[ratelimits\]\][^\[]*", "", t))' > "$CONFIG"
else
  sed -e 's/limit = [0-9]*/limit = 100000000/' wrangler.toml > "$CONFIG"
fi
STATE="$(mktemp -d)"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TOKEN=bench-admin-token
# The worker (wrangler, workerd) on CPU 0, the load generator on CPU 1: on a
# 2-core machine they would otherwise fight for the same cores, and which
# one the scheduler favours in a round swings throughput by ±20 %.
SERVER_CPU=(); LOAD_CPU=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  SERVER_CPU=(taskset -c 0); LOAD_CPU=(taskset -c 1)
fi
setsid "${SERVER_CPU[@]}" wrangler dev --config "$CONFIG" --ip 127.0.0.1 --port "$PORT" --persist-to "$STATE" \
  --show-interactive-dev-session=false --log-level error \
  --var "ADMIN_TOKEN:$TOKEN" --var "QUOTE_SIGNING_KEYS:b1:bench-signing-key-0123456789" \
  --var "GRID_FRESH_SECONDS:3600" > "$STATE/wrangler.log" 2>&1 &
PID=$!
cleanup() { kill -- -"$PID" 2>/dev/null || true; rm -rf "$STATE" "$CONFIG"; }
trap cleanup EXIT
for _ in $(seq 1 120); do curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 1; done

now=$(($(date +%s) * 1000))
curl -fsS -X PUT "http://127.0.0.1:$PORT/admin/v1/grids/sf" -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' \
  -d "{\"format\":1,\"region\":\"sf\",\"level\":13,\"generation\":1,\"computed_at\":$now,\"cells\":[{\"cell\":\"8085809c\",\"multiplier\":1.8,\"supply\":3,\"demand\":11,\"trend\":\"increasing\"}]}" >/dev/null

LUA="$STATE/estimate.lua"
cat > "$LUA" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"pickup_location":{"latitude":37.7749,"longitude":-122.4194},"dropoff_location":{"latitude":37.7849,"longitude":-122.4094},"vehicle_type":"standard"}'
LUA

# CPU ticks (user + system) of every workerd process of this server.
workerd_ticks() {
  local total=0 pid
  for pid in $(pgrep -g "$(ps -o pgid= "$PID" | tr -d ' ')" workerd); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
HZ=$(getconf CLK_TCK)

# rps p50_ms p99_ms non2xx workerd_cpu_us_per_request of one wrk run
run() {
  local out before after
  before=$(workerd_ticks)
  out=$("${LOAD_CPU[@]}" wrk -t1 -c"$CONNS" -d"${SECS}s" --latency "$@")
  after=$(workerd_ticks)
  local rps p50 p99 bad reqs
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  bad=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  local cpu_us=$(( (after - before) * 1000000 / HZ / (reqs > 0 ? reqs : 1) ))
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") ${bad:-0} $cpu_us"
}
to_ms() { python3 -c "
import re,sys; v=sys.argv[1]; n=float(re.match(r'[0-9.]+',v).group()); u=v[len(re.match(r'[0-9.]+',v).group()):]
print(round(n*{'us':0.001,'ms':1,'s':1000}[u],3))" "$1"; }

step "warm-up"
wrk -t2 -c"$CONNS" -d3s "http://127.0.0.1:$PORT/health" >/dev/null
wrk -t2 -c"$CONNS" -d3s -s "$LUA" "http://127.0.0.1:$PORT/api/v1/pricing/estimate" >/dev/null

step "$PAIRS pairs of ${SECS}s rounds (trivial, estimate; alternating order), $CONNS connections, wrk -t1"
printf '%-6s %-9s %10s %8s %8s %7s %12s\n' pair handler req/s p50_ms p99_ms non2xx workerd_us/req
ROWS="$STATE/rows"
: > "$ROWS"
trivial() { run "http://127.0.0.1:$PORT/health"; }
estimate() { run -s "$LUA" "http://127.0.0.1:$PORT/api/v1/pricing/estimate"; }
for p in $(seq 1 "$PAIRS"); do
  if [ $((p % 2)) = 1 ]; then order=(trivial estimate); else order=(estimate trivial); fi
  for h in "${order[@]}"; do
    row=$("$h")
    echo "$p $h $row" >> "$ROWS"
    printf '%-6s %-9s %10s %8s %8s %7s %12s\n' "$p" "$h" $row
  done
done
python3 - "$ROWS" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for p, h, *v in rows:
    by.setdefault(int(p), {})[h] = list(map(float, v))
pairs = [d for d in by.values() if len(d) == 2]
def quart(xs):
    q = st.quantiles(xs, n=4)
    return f"{st.median(xs):.2f} (quartiles {q[0]:.2f}-{q[2]:.2f})"
thr = [d["estimate"][0] / d["trivial"][0] for d in pairs]
p99 = [d["estimate"][2] / d["trivial"][2] for d in pairs]
cpu = [d["estimate"][4] / max(d["trivial"][4], 1) for d in pairs]
med = lambda h, i: st.median(d[h][i] for d in pairs)
print()
for h in ("trivial", "estimate"):
    print(f"median {h:9} {med(h,0):8.0f} req/s  p50 {med(h,1):.2f} ms  p99 {med(h,2):.2f} ms  workerd {med(h,4):.0f} us/req")
print(f"throughput ratio estimate/trivial, median of {len(pairs)} pairs: {quart(thr)}   (target >= 0.90)")
print(f"p99 ratio estimate/trivial, median of pairs:        {quart(p99)}   (target <= 1.50)")
print(f"workerd CPU per request ratio, median of pairs:     {quart(cpu)}")
print(f"non-2xx responses: {sum(d[h][3] for d in pairs for h in d):.0f}")
PY
