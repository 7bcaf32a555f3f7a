# Sourced by bench-edge.sh, profile-edge.sh, probe-edge.sh and
# probe-edge-load.sh (soak.sh uses only ESTIMATE_BODY): starts the
# worker under `wrangler dev` for load (rate limits lifted, a grid pushed) and sets
#   PORT, PID (wrangler's process group), STATE (temp dir), LUA (a wrk script
#   posting the benchmark estimate), BODY (the estimate's body, a file, for
#   scripts/load.mjs), LOAD_CPU (prefix pinning the load generator).
# Usage: start_load_worker [extra wrangler dev arguments...]

# The worker (wrangler, workerd) on CPU 0, the load generator on CPU 1: on a
# 2-core machine they would otherwise fight for the same cores, and which
# one the scheduler favours in a round swings throughput by ±20 %.
SERVER_CPU=()
LOAD_CPU=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  SERVER_CPU=(taskset -c 0)
  LOAD_CPU=(taskset -c 1)
fi

# wrk (the load generator) and ss (find_runtime_port), from Debian if missing.
ensure_load_tools() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v ss >/dev/null || missing+=(iproute2)
  if [ "${#missing[@]}" -gt 0 ]; then
    step "installing ${missing[*]} (Debian)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

start_load_worker() {
  bash "$ROOT/scripts/setup.sh" >/dev/null
  ensure_load_tools
  # EQ_BENCH_FEATURES: a bench build of the worker with these cargo
  # features (scripts/build-worker.sh), e.g. `probes`.
  local features="${EQ_BENCH_FEATURES:-}"
  bash "$ROOT/scripts/build-worker.sh" ${features:+"$features"}

  STATE="$(mktemp -d)"
  # The same worker and bindings, with the rate limits lifted: a load test
  # from one address would otherwise measure the limiter's 429s. (The config
  # must sit beside wrangler.toml: its paths are relative to it.)
  CONFIG="$ROOT/wrangler.load-$$.toml"
  # Diagnostics, to split the estimate's cost: EQ_BENCH_NO_LIMITER=1 drops
  # the rate-limit bindings (the worker then skips the check);
  # EQ_BENCH_NO_QUEUE=1 drops the queue's producer and consumer (each batch
  # of quote events is then logged as not queued, and nothing consumes).
  EQ_BENCH_NO_LIMITER="${EQ_BENCH_NO_LIMITER:-0}" EQ_BENCH_NO_QUEUE="${EQ_BENCH_NO_QUEUE:-0}" \
    EQ_BENCH_FEATURES="$features" python3 - "$ROOT/wrangler.toml" > "$CONFIG" <<'PY'
import os, re, sys
t = open(sys.argv[1]).read()
features = os.environ["EQ_BENCH_FEATURES"]
if features:
    t = t.replace('main = "edge/build/index.js"', f'main = "edge/build-{features}/index.js"', 1)
    t = t.replace('command = "bash scripts/build-worker.sh"', f'command = "bash scripts/build-worker.sh {features}"', 1)
    assert f"build-{features}" in t and f"build-worker.sh {features}" in t, "wrangler.toml's main or build command moved"
if os.environ["EQ_BENCH_NO_LIMITER"] == "1":
    t = re.sub(r"\[\[ratelimits\]\][^\[]*", "", t)
else:
    t = re.sub(r"limit = [0-9]+", "limit = 100000000", t)
if os.environ["EQ_BENCH_NO_QUEUE"] == "1":
    t = re.sub(r"\[\[queues\.(producers|consumers)\]\][^\[]*", "", t)
print(t)
PY
  PORT=$(free_port)
  local token=bench-admin-token
  setsid "${SERVER_CPU[@]}" wrangler dev --config "$CONFIG" --ip 127.0.0.1 --port "$PORT" --persist-to "$STATE" \
    --show-interactive-dev-session=false --log-level error \
    --var "ADMIN_TOKEN:$token" --var "QUOTE_SIGNING_KEYS:b1:bench-signing-key-0123456789" \
    --var "GRID_FRESH_SECONDS:3600" "$@" > "$STATE/wrangler.log" 2>&1 &
  PID=$!
  trap 'kill -- -"$PID" 2>/dev/null || true; rm -rf "$STATE" "$CONFIG"' EXIT
  local ready=0
  for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then ready=1; break; fi
    sleep 1
  done
  if [ "$ready" != 1 ]; then
    echo "wrangler dev did not become ready; its log:" >&2
    cat "$STATE/wrangler.log" >&2
    exit 1
  fi

  local now=$(($(date +%s) * 1000))
  curl -fsS -X PUT "http://127.0.0.1:$PORT/admin/v1/grids/sf" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' \
    -d "{\"format\":1,\"region\":\"sf\",\"level\":13,\"generation\":1,\"computed_at\":$now,\"cells\":[{\"cell\":\"8085809c\",\"multiplier\":1.8,\"supply\":3,\"demand\":11,\"trend\":\"increasing\"}]}" >/dev/null

  LUA="$STATE/estimate.lua"
  write_estimate_lua "$LUA"
  BODY="$STATE/estimate.json"
  printf '%s' "$ESTIMATE_BODY" > "$BODY"
}

# build_before_and_after <revision> <workdir> <target dir name>: the
# worker at <revision> (checked out in <workdir>/before, built in
# target/<name>) and the working tree's, for benchmarks comparing the two.
build_before_and_after() {
  local rev=$1 work=$2 target=$3
  bash "$ROOT/scripts/setup.sh" >/dev/null
  ensure_load_tools
  step "build the worker at $rev (in $work/before) and the working tree"
  mkdir -p "$work/before"
  git -C "$ROOT" archive "$rev" | tar -x -C "$work/before"
  ln -s "$ROOT/node_modules" "$work/before/node_modules"
  CARGO_TARGET_DIR="$ROOT/target/$target" bash "$work/before/scripts/build-worker.sh"
  bash "$ROOT/scripts/build-worker.sh"
}

# start_instance <label> <tree> <workdir>: one more worker under `wrangler
# dev` for benchmarks that run several at once: the worker of <tree> (a
# checkout), on the server CPU, state in <workdir>/state-<label>, rate
# limits lifted, a grid pushed for sf. Sets RUNTIME_<label> to its
# runtime's own socket; the caller stops them all with stop_instances.
INSTANCES=()
INSTANCE_CONFIGS=()
start_instance() {
  local label=$1 tree=$2 work=$3 port config state now
  port=$(free_port)
  config="$tree/wrangler.bench-$label-$$.toml"
  state="$work/state-$label"
  mkdir -p "$state"
  sed -e 's/limit = [0-9]*/limit = 100000000/' "$tree/wrangler.toml" > "$config"
  # wrangler dev runs in the tree (the worker's paths are relative to it),
  # in its own process group.
  setsid "${SERVER_CPU[@]}" bash -c 'cd "$0" && exec wrangler dev "$@"' "$tree" \
    --config "$config" --ip 127.0.0.1 \
    --port "$port" --persist-to "$state" --show-interactive-dev-session=false \
    --log-level error --var "ADMIN_TOKEN:bench-admin-token" \
    --var "QUOTE_SIGNING_KEYS:b1:bench-signing-key-0123456789" \
    --var "GRID_FRESH_SECONDS:3600" > "$state/wrangler.log" 2>&1 &
  INSTANCES+=($!)
  INSTANCE_CONFIGS+=("$config")
  PID=$!
  PORT=$port
  for _ in $(seq 1 120); do
    curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 1
  done
  curl -fsS "http://127.0.0.1:$port/health" >/dev/null || { cat "$state/wrangler.log" >&2; exit 1; }
  now=$(($(date +%s) * 1000))
  curl -fsS -X PUT "http://127.0.0.1:$port/admin/v1/grids/sf" -H "authorization: Bearer bench-admin-token" \
    -H 'content-type: application/json' \
    -d "{\"format\":1,\"region\":\"sf\",\"level\":13,\"generation\":1,\"computed_at\":$now,\"cells\":[{\"cell\":\"8085809c\",\"multiplier\":1.8,\"supply\":3,\"demand\":11,\"trend\":\"increasing\"}]}" >/dev/null
  find_runtime_port /health '"status":"ok"'
  printf -v "RUNTIME_$label" '%s' "$RUNTIME"
  note "$label: proxy :$port, runtime :$RUNTIME"
}

stop_instances() {
  local p
  for p in "${INSTANCES[@]}"; do kill -- -"$p" 2>/dev/null || true; done
  rm -f "${INSTANCE_CONFIGS[@]}"
}

# The benchmark's estimate request body.
ESTIMATE_BODY='{"pickup_location":{"latitude":37.7749,"longitude":-122.4194},"dropoff_location":{"latitude":37.7849,"longitude":-122.4094},"vehicle_type":"standard"}'

# write_post_lua <path> <json body>: a wrk script posting that body (which
# must not contain a single quote).
write_post_lua() {
  cat > "$1" <<LUA
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '$2'
LUA
}

# write_estimate_lua <path>: a wrk script posting the benchmark's estimate.
write_estimate_lua() { write_post_lua "$1" "$ESTIMATE_BODY"; }

# find_runtime_port <path> <text>: sets RUNTIME to the runtime workerd's own
# entry socket, the one behind wrangler's proxy (PORT): the listening socket
# of wrangler's processes, other than PORT, whose answer to GET <path>
# contains <text>. Requests sent there skip wrangler dev's proxy process.
find_runtime_port() {
  RUNTIME=""
  local pid p
  for pid in $(pgrep -g "$(ps -o pgid= "$PID" | tr -d ' ')" workerd); do
    for p in $(ss -ltnp | grep "pid=$pid," | awk '{print $4}' | sed 's/.*://'); do
      [ "$p" = "$PORT" ] && continue
      if curl -fsS -m 2 "http://127.0.0.1:$p$1" 2>/dev/null | grep -qF "$2"; then RUNTIME=$p; fi
    done
  done
  [ -n "$RUNTIME" ] || { echo "could not find the runtime's entry socket behind :$PORT" >&2; return 1; }
}

# Nanoseconds of CPU run by every workerd thread of the worker (schedstat:
# finer than the ticks below).
workerd_ns() {
  local total=0 pid task
  for pid in $(pgrep -g "$(ps -o pgid= "$PID" | tr -d ' ')" workerd); do
    for task in /proc/"$pid"/task/*/schedstat; do
      total=$((total + $(cut -d' ' -f1 "$task" 2>/dev/null || echo 0)))
    done
  done
  echo "$total"
}

# CPU ticks (user + system) of every workerd process of the worker.
workerd_ticks() {
  local total=0 pid
  for pid in $(pgrep -g "$(ps -o pgid= "$PID" | tr -d ' ')" workerd); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
