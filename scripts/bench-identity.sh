#!/usr/bin/env bash
# What verifying riders' tokens costs an estimate inside workerd, as ratios
# against the estimate without a token, in one run.
# Usage: scripts/bench-identity.sh [repetitions per probe call, default 2000] [load rounds, default 10] [seconds per round, default 2]
#
# A bench build of the worker (feature `probes`, never shipped) with the
# identity of a provider made for the run (`sim identity`: the `identity`
# key, RIDER_TOKEN_SECRET, a token of each algorithm) does two things:
#  * probes (edge/src/probe.rs): workerd's CPU per repetition of the steps
#    `price` (the estimate's pricing, the baseline), `identity` (the
#    rider, as the estimate gets it: verified once, then from the
#    isolate's cache) and `identity_uncached` (a token verified from
#    scratch: a rider's first request with a new token), each with an
#    ES256, RS256 and HS256 token;
#  * load (wrk, 16 connections, the server on CPU 0): the estimate without
#    a token and with an ES256 token, in alternating rounds, workerd's CPU
#    per request and requests/s of each.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
N="${1:-2000}"
ROUNDS="${2:-10}"
SECS="${3:-2}"
SETTLE=2.5

source "$ROOT/scripts/edge-load.sh"
step "an identity provider for the run (sim identity)"
cargo build -q --release -p equilibrium-sim
ID="$(mktemp -d)"
"$ROOT/target/release/sim" identity --out "$ID" >/dev/null
EQ_BENCH_FEATURES=probes start_load_worker --var "RIDER_TOKEN_SECRET:$(cat "$ID/secret")"
trap 'kill -- -"$PID" 2>/dev/null || true; rm -rf "$STATE" "$CONFIG" "$ID"' EXIT
wrangler kv key put --config "$CONFIG" --local --persist-to "$STATE" --binding CONFIG identity \
  "$(cat "$ID/identity.json")" >/dev/null
find_runtime_port /health '"status":"ok"'
# The setting is read (and cached) by the first request with a token.
for alg in es256 rs256 hs256; do
  curl -fsS -o /dev/null -X POST "http://127.0.0.1:$RUNTIME/api/v1/pricing/estimate" \
    -H 'content-type: application/json' -H "authorization: Bearer $(cat "$ID/token-$alg")" \
    -d "$ESTIMATE_BODY" || { echo "an estimate with the $alg token failed" >&2; exit 1; }
done

# CPU ns of one probe call: probe_ns <step> <n> <alg>
probe_ns() {
  local before after
  before=$(workerd_ns)
  curl -fsS -o "$STATE/probe.out" -X POST "http://127.0.0.1:$RUNTIME/__probe/$1?n=$2" \
    -H 'content-type: application/json' -H "authorization: Bearer $(cat "$ID/token-$3")" \
    -d "$ESTIMATE_BODY" || {
    echo "probe $1 failed: $(cat "$STATE/probe.out" 2>/dev/null)" >&2
    exit 1
  }
  grep -qF "\"n\":$2,\"step\":\"$1\"" "$STATE/probe.out" || { echo "probe $1: unexpected answer $(cat "$STATE/probe.out")" >&2; exit 1; }
  sleep "$SETTLE"
  after=$(workerd_ns)
  echo $((after - before))
}

TOKEN_LUA="$STATE/estimate-token.lua"
write_estimate_lua "$TOKEN_LUA"
echo "wrk.headers[\"authorization\"] = \"Bearer $(cat "$ID/token-es256")\"" >> "$TOKEN_LUA"
# "<CPU ns per request> <requests/s>" of one load round: load <lua>
load() {
  local before after out requests
  before=$(workerd_ns)
  out=$("${LOAD_CPU[@]}" wrk -t1 -c16 -d"${SECS}s" -s "$1" "http://127.0.0.1:$RUNTIME/api/v1/pricing/estimate")
  sleep "$SETTLE"
  after=$(workerd_ns)
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  grep -q "Non-2xx" <<<"$out" && { echo "load got non-2xx answers" >&2; exit 1; }
  [ "${requests:-0}" -gt 0 ] || { echo "load completed no request: $out" >&2; exit 1; }
  echo "$(((after - before) / requests)) $(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
}

ROWS="$STATE/rows"
: > "$ROWS"
step "probes: price, identity, identity_uncached with each algorithm (n=1 and n=$N, 3 rounds)"
for r in 1 2 3; do
  for alg in es256 rs256 hs256; do
    for s in price identity identity_uncached; do
      one=$(probe_ns "$s" 1 "$alg")
      many=$(probe_ns "$s" "$N" "$alg")
      us=$(python3 -c "print(f'{($many - $one) / ($N - 1) / 1e3:.2f}')")
      echo "probe $alg:$s $us" >> "$ROWS"
      note "round $r $alg $s: $us us"
    done
  done
done

step "load: $ROUNDS rounds each of ${SECS}s, without a token and with an ES256 token, alternating"
load "$LUA" >/dev/null
load "$TOKEN_LUA" >/dev/null
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 0 ]; then order="$LUA $TOKEN_LUA"; else order="$TOKEN_LUA $LUA"; fi
  for lua in $order; do
    read -r ns rps <<<"$(load "$lua")"
    label=anonymous
    [ "$lua" = "$TOKEN_LUA" ] && label=es256
    echo "load-ns $label $ns" >> "$ROWS"
    echo "load-rps $label $rps" >> "$ROWS"
    note "round $r $label: $((ns / 1000)) us CPU/request, $rps requests/s"
  done
done

python3 - "$ROWS" <<'PY'
import statistics as st, sys
rows = {}
for line in open(sys.argv[1]):
    kind, key, v = line.split()
    rows.setdefault((kind, key), []).append(float(v))
med = {k: st.median(v) for k, v in rows.items()}
print("\nmedians, workerd CPU per repetition in us (ratio to the same algorithm's price step):")
for alg in ["es256", "rs256", "hs256"]:
    price = med[("probe", f"{alg}:price")]
    cells = []
    for s in ["price", "identity", "identity_uncached"]:
        v = med[("probe", f"{alg}:{s}")]
        cells.append(f"{s} {v:.2f} ({v / price:.2f}x)")
    print(f"  {alg}: " + ", ".join(cells))
a_ns, t_ns = med[("load-ns", "anonymous")] / 1e3, med[("load-ns", "es256")] / 1e3
a_rps, t_rps = med[("load-rps", "anonymous")], med[("load-rps", "es256")]
print(f"\nunder load: anonymous {a_ns:.1f} us CPU/request, {a_rps:.0f} requests/s; "
      f"ES256 token {t_ns:.1f} us, {t_rps:.0f} requests/s")
print(f"ES256/anonymous: CPU per request {t_ns / a_ns:.3f}x, throughput {t_rps / a_rps:.3f}x")
PY
