# Sourced by the project's scripts: where the offline worker toolchain lives.
# worker-build would download wasm-bindgen, esbuild and wasm-opt from GitHub,
# which these machines cannot reach; these overrides point it at local ones.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$ROOT/node_modules/.bin:$PATH"
export WASM_BINDGEN_BIN="$HOME/.cargo/bin/wasm-bindgen"
export ESBUILD_BIN="$ROOT/node_modules/@esbuild/linux-x64/bin/esbuild"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
export WRANGLER_SEND_METRICS=false
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The version of a package in Cargo.lock.
lock_version() {
  awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

# The project's own Python environment (target/py): pinned PyPI tools go
# there, not into the system Python (which Debian marks externally managed,
# so a plain `pip install` fails on a fresh machine). Usage:
#   py_venv "schemathesis==4.32.5" "s2sphere==0.2.5" ...   → sets PY_VENV
py_venv() {
  PY_VENV="$ROOT/target/py"
  if [ ! -x "$PY_VENV/bin/python" ]; then
    step "Python environment for pinned tools ($PY_VENV)"
    python3 -m venv "$PY_VENV"
  fi
  # Already-satisfied pins are checked locally, without the network.
  "$PY_VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"
}
