# Sourced by demo.sh, cluster.sh and bench-cluster.sh: starting the local
# stack's servers on loopback, each in its own process group, with its log
# under $STATE; `stop_stack` stops them all.
# Needs STATE (a directory) set by the caller.

STACK_PIDS=()

# stack_start <name> <command...>: runs it in the background, logging to
# $STATE/<name>.log.
stack_start() {
  local name=$1; shift
  setsid "$@" >> "$STATE/$name.log" 2>&1 &
  STACK_PIDS+=($!)
  LAST_PID=$!
}

# wait_http <name> <url>: polls until the URL answers (2 minutes at most).
wait_http() {
  for i in $(seq 1 600); do
    curl -fsS -m 2 "$2" >/dev/null 2>&1 && return 0
    [ $((i % 50)) -eq 0 ] && note "waiting for the $1 ($((i / 5)) s)..."
    sleep 0.2
  done
  echo "the $1 did not start; see $STATE/$1.log" >&2
  exit 1
}

# stop_stack: SIGTERM to every process group started here, the last
# started first (the origins hand their regions over while NATS still
# runs), then wait.
stop_stack() {
  local i pid
  for ((i = ${#STACK_PIDS[@]} - 1; i >= 0; i--)); do
    pid=${STACK_PIDS[$i]}
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    # Give each a moment to finish its own shutdown before the next goes.
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  wait 2>/dev/null || true
}

# demo_secrets: the worker's local secrets (.dev.vars) and the origin's
# producer and reader tokens ($STATE/origin-tokens), generated once and
# never committed; exports ADMIN_TOKEN, EQ_PRODUCER_TOKENS,
# EQ_READER_TOKENS, EQ_PRODUCER_TOKEN and EQ_DISPATCH_TOKEN (the worker's
# DISPATCH_TOKEN, for the simulator's bookings).
demo_secrets() {
  if [ ! -f .dev.vars ]; then
    step "creating .dev.vars (local admin token and quote signing key)"
    {
      echo "ADMIN_TOKEN=\"$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')\""
      echo "QUOTE_SIGNING_KEYS=\"local1:$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')\""
    } > .dev.vars
  fi
  if ! grep -q '^DISPATCH_TOKEN=' .dev.vars; then
    echo "DISPATCH_TOKEN=\"dispatch-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')\"" >> .dev.vars
  fi
  ADMIN_TOKEN="$(sed -n 's/^ADMIN_TOKEN="\(.*\)"$/\1/p' .dev.vars)"
  EQ_DISPATCH_TOKEN="$(sed -n 's/^DISPATCH_TOKEN="\(.*\)"$/\1/p' .dev.vars)"
  export EQ_DISPATCH_TOKEN
  if [ ! -f "$STATE/origin-tokens" ]; then
    {
      echo "EQ_PRODUCER_TOKENS=producer-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
      echo "EQ_READER_TOKENS=reader-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    } > "$STATE/origin-tokens"
    chmod 600 "$STATE/origin-tokens"
  fi
  set -a; source "$STATE/origin-tokens"; set +a
  export EQ_PRODUCER_TOKEN="$EQ_PRODUCER_TOKENS"
}

# start_nats_cluster: three routed JetStream servers (target/py's
# nats-server) with their stores under $STATE/nats-*; sets NATS_URLS.
start_nats_cluster() {
  local nats="$ROOT/target/py/bin/nats-server" i j routes
  local client=() route=() mon=()
  for i in 0 1 2; do client+=("$(free_port)"); route+=("$(free_port)"); mon+=("$(free_port)"); done
  for i in 0 1 2; do
    routes=""
    for j in 0 1 2; do [ "$j" != "$i" ] && routes="${routes:+$routes,}nats://127.0.0.1:${route[$j]}"; done
    stack_start "nats-$i" "$nats" -a 127.0.0.1 -p "${client[$i]}" -m "${mon[$i]}" -n "nats-$i" \
      -js -sd "$STATE/nats-$i" --cluster_name equilibrium \
      --cluster "nats://127.0.0.1:${route[$i]}" --routes "$routes"
  done
  for i in 0 1 2; do wait_http "nats-$i" "http://127.0.0.1:${mon[$i]}/healthz"; done
  NATS_URLS="nats://127.0.0.1:${client[0]},nats://127.0.0.1:${client[1]},nats://127.0.0.1:${client[2]}"
}

# start_postgres: Debian's PostgreSQL on a free port with its data under
# $STATE/pg (as `nobody` when run as root: it refuses root); sets PG_URL.
start_postgres() {
  local bin port as=()
  bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  port="$(free_port)"
  mkdir -p "$STATE/pg"
  if [ "$(id -u)" = 0 ]; then
    chown -R nobody:nogroup "$STATE/pg"
    as=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
  fi
  if [ ! -f "$STATE/pg/data/PG_VERSION" ]; then
    "${as[@]}" "$bin/initdb" -D "$STATE/pg/data" -U eq --auth=trust -E UTF8 --no-sync > "$STATE/pg-init.log" 2>&1
  fi
  stack_start postgres "${as[@]}" "$bin/postgres" -D "$STATE/pg/data" -h 127.0.0.1 -p "$port" -k "$STATE/pg"
  for _ in $(seq 1 300); do "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break; sleep 0.2; done
  PG_URL="postgres://eq@127.0.0.1:$port/postgres"
}

# stack_prepare: what every local stack does first: install what is
# missing, the local secrets, the release builds and the map, and a trap
# that stops the whole stack on ctrl-c or exit.
stack_prepare() {
  bash scripts/setup.sh
  demo_secrets
  step "building the worker, the origin, the simulator and the map"
  bash scripts/build-worker.sh
  cargo build -q --release -p equilibrium-origin -p equilibrium-sim
  bash web-demo/build.sh
  trap stack_stop_and_exit INT TERM EXIT
}

stack_stop_and_exit() {
  trap - INT TERM EXIT
  echo
  step "stopping"
  stop_stack
  note "stopped; logs in $STATE"
  exit 0
}

# start_edge <origin url>: the worker under `wrangler dev` on $EDGE_PORT,
# its CORS open to the map on $MAP_PORT, its events queue posting to the
# origin with the producer token; waits until it answers.
start_edge() {
  stack_start edge wrangler dev --ip 127.0.0.1 --port "$EDGE_PORT" --persist-to "$STATE/edge" \
    --show-interactive-dev-session=false --var "CORS_ORIGINS:http://127.0.0.1:$MAP_PORT" \
    --var "ORIGIN_URL:$1" --var "ORIGIN_TOKEN:$EQ_PRODUCER_TOKEN" --var "EVENTS_RETRY_SECONDS:5"
  wait_http edge "http://127.0.0.1:$EDGE_PORT/health"
}
