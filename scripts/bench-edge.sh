#!/usr/bin/env bash
# Estimate throughput and latency of the worker in workerd, as a ratio
# against a trivial handler (GET /health) of the same worker, same run.
# Usage: scripts/bench-edge.sh [seconds per round, default 8] [connections, default 16] [rounds, default 7]
# Rounds alternate (trivial, estimate) so drift on a shared machine hits both;
# medians are reported, with workerd's CPU time per request from /proc.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
SECS="${1:-8}"
CONNS="${2:-16}"
ROUNDS="${3:-7}"

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
setsid wrangler dev --config "$CONFIG" --ip 127.0.0.1 --port "$PORT" --persist-to "$STATE" \
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
  out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" --latency "$@")
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

step "alternating rounds: $ROUNDS x (${SECS}s trivial, ${SECS}s estimate), $CONNS connections, 2 wrk threads"
printf '%-11s %10s %8s %8s %7s %12s\n' round req/s p50_ms p99_ms non2xx workerd_us/req
declare -a B E
for r in $(seq 1 "$ROUNDS"); do
  b=$(run "http://127.0.0.1:$PORT/health"); B+=("$b"); printf '%-11s %10s %8s %8s %7s %12s\n' "trivial$r" $b
  e=$(run -s "$LUA" "http://127.0.0.1:$PORT/api/v1/pricing/estimate"); E+=("$e"); printf '%-11s %10s %8s %8s %7s %12s\n' "estimate$r" $e
done
python3 - "${B[@]}" "${E[@]}" <<'PY'
import sys, statistics as st
vals=[list(map(float,x.split())) for x in sys.argv[1:]]
half=len(vals)//2
b, e = vals[:half], vals[half:]
med=lambda rows,i: st.median(r[i] for r in rows)
print()
print(f"median trivial:  {med(b,0):9.0f} req/s  p50 {med(b,1):.2f} ms  p99 {med(b,2):.2f} ms")
print(f"median estimate: {med(e,0):9.0f} req/s  p50 {med(e,1):.2f} ms  p99 {med(e,2):.2f} ms")
print(f"throughput ratio estimate/trivial: {med(e,0)/med(b,0):.2f}   (target >= 0.90)")
print(f"p99 ratio estimate/trivial:        {med(e,2)/med(b,2):.2f}   (target <= 1.50)")
print(f"workerd CPU per request: trivial {med(b,4):.0f} us, estimate {med(e,4):.0f} us (ratio {med(e,4)/max(med(b,4),1):.2f})")
print(f"non-2xx responses: {sum(r[3] for r in b+e):.0f}")
PY
