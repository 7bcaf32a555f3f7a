#!/usr/bin/env bash
# Builds the map page into web-demo/dist: the pricing core's geometry to
# wasm (cargo + wasm-bindgen, the steps wasm-pack runs), the page bundled
# with Leaflet by esbuild, and the static files.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
out="$ROOT/web-demo/dist"
mkdir -p "$out/pkg"
cargo build -q -p equilibrium-web-geo --target wasm32-unknown-unknown --release
wasm-bindgen --target web --out-dir "$out/pkg" --out-name equilibrium_web_geo \
  "$ROOT/target/wasm32-unknown-unknown/release/equilibrium_web_geo.wasm"
"$ESBUILD_BIN" web-demo/src/main.js --bundle --format=esm --minify \
  --external:./pkg/equilibrium_web_geo.js --outfile="$out/app.js" --log-level=warning
cp web-demo/index.html web-demo/app.css "$out/"
cp node_modules/leaflet/dist/leaflet.css "$out/"
mkdir -p "$out/images" && cp node_modules/leaflet/dist/images/* "$out/images/"
echo "map built: $out ($(du -sh "$out" | cut -f1))"
