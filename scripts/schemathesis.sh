#!/usr/bin/env bash
# Property-based API testing of the worker from its own /openapi.json with
# schemathesis (PyPI), against `wrangler dev`: zero server errors and zero
# responses that break the document (status codes, schemas, content types,
# headers), and schema-invalid requests must be refused.
#
# One bearer token serves as the admin and the dispatch token, so the
# booking endpoints are exercised past their credential check (unknown
# bookings, bad bodies, bad Idempotency-Keys).
#
# Not checked: "positive data acceptance" (ST202). Some schema-valid
# requests are refused on purpose by rules JSON Schema cannot state: a
# south edge north of the north edge, a trip across an ocean, a forged quote.
#
# Then the same against the origin's /openapi.json (generated from its
# types by utoipa): producer endpoints with a producer token, reader and
# operations endpoints with a reader token. Not checked there: negative
# data rejection on ingest, which accepts a batch partly by design (each
# record is validated on its own and reported).
# Usage: scripts/schemathesis.sh [examples per operation, default 40]
#        ORIGIN_EXAMPLES (default 150) per operation of the origin
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
EXAMPLES="${1:-40}"
py_venv "schemathesis==4.32.5"
bash scripts/build-worker.sh >/dev/null
STATE="$(mktemp -d)"
PORT=$(free_port)
TOKEN=schemathesis-admin-token
setsid wrangler dev --ip 127.0.0.1 --port "$PORT" --persist-to "$STATE" \
  --show-interactive-dev-session=false --log-level error \
  --var "ADMIN_TOKEN:$TOKEN" --var "DISPATCH_TOKEN:$TOKEN" --var "QUOTE_SIGNING_KEYS:st1:schemathesis-signing-key-01" > "$STATE/wrangler.log" 2>&1 &
PID=$!
trap 'kill -- -"$PID" 2>/dev/null || true; rm -rf "$STATE"' EXIT
for _ in $(seq 1 120); do curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 1; done
step "schemathesis: $EXAMPLES examples per operation"
# The WebSocket endpoint is not HTTP request/response; it is tested in tests/edge.rs.
"$PY_VENV/bin/schemathesis" run "http://127.0.0.1:$PORT/openapi.json" --url "http://127.0.0.1:$PORT" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,unsupported_method \
  --max-examples "$EXAMPLES" --seed 20261122 --exclude-path /api/v1/pricing/stream \
  -H "Authorization: Bearer $TOKEN" --no-color 2>&1 | tee "$STATE/report.txt" | grep -vE "^\s*$" | tail -n 60
generated=$(grep -oE '[0-9]+ generated' "$STATE/report.txt" | head -1 | cut -d' ' -f1)
echo "schemathesis: ${generated:-0} generated inputs tried"
grep -qE '^=+ .*(failure|error)' "$STATE/report.txt" && exit 1

step "schemathesis against the origin: ${ORIGIN_EXAMPLES:=150} examples per operation"
cargo build -q --locked -p equilibrium-origin --bin origin
OPORT=$(free_port)
PRODUCER=schemathesis-producer-token-01
READER=schemathesis-reader-token-01
EQ_PRODUCER_TOKENS=$PRODUCER EQ_READER_TOKENS=$READER RUST_LOG=warn \
  setsid "$ROOT/target/debug/origin" serve --listen "127.0.0.1:$OPORT" \
  --database "$STATE/origin.sqlite" > "$STATE/origin.log" 2>&1 &
OPID=$!
trap 'kill -- -"$PID" 2>/dev/null || true; kill -- -"$OPID" 2>/dev/null || true; rm -rf "$STATE"' EXIT
for _ in $(seq 1 60); do curl -fsS "http://127.0.0.1:$OPORT/health" >/dev/null 2>&1 && break; sleep 1; done
origin_run() { # name, token, checks, path regex
  "$PY_VENV/bin/schemathesis" run "http://127.0.0.1:$OPORT/openapi.json" --url "http://127.0.0.1:$OPORT" \
    --checks "$3" --max-examples "$ORIGIN_EXAMPLES" --seed 20261124 \
    --include-path-regex "$4" -H "Authorization: Bearer $2" --no-color 2>&1 \
    | tee "$STATE/origin-$1.txt" | grep -vE "^\s*$" | tail -n 60 >&2
  grep -oE '[0-9]+ generated' "$STATE/origin-$1.txt" | head -1 | cut -d' ' -f1
}
BASE_CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance
n1=$(origin_run producer "$PRODUCER" "$BASE_CHECKS" '^/v1/(ingest|outcomes|edge-events)' | tail -n 1)
n2=$(origin_run reader "$READER" "$BASE_CHECKS,negative_data_rejection" '^/(v1/(grids|forecasts|analytics)|health|metrics|openapi)' | tail -n 1)
echo "schemathesis (origin): $(( ${n1:-0} + ${n2:-0} )) generated inputs tried"
if grep -qE '^=+ .*(failure|error)' "$STATE"/origin-*.txt; then exit 1; fi
if grep -q 'panicked' "$STATE/origin.log"; then echo "the origin panicked" >&2; exit 1; fi
