#!/usr/bin/env bash
# Builds the map page into web-demo/dist: the pricing core's geometry to
# wasm with wasm-pack (`--mode no-install`: the wasm-bindgen installed by
# scripts/setup.sh, no downloads; its wasm-opt step is off in geo-wasm's
# Cargo.toml and run here with binaryen from npm), the page bundled with
# Leaflet by esbuild, and the static files.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$ROOT"
out="$ROOT/web-demo/dist"
mkdir -p "$out/pkg"
wasm-pack --log-level warn build --mode no-install --target web --release --no-pack \
  --out-dir "$out/pkg" --out-name equilibrium_web_geo web-demo/geo-wasm
"$WASM_OPT_BIN" -Oz "$out/pkg/equilibrium_web_geo_bg.wasm" -o "$out/pkg/equilibrium_web_geo_bg.wasm"
"$ESBUILD_BIN" web-demo/src/main.js --bundle --format=esm --minify \
  --external:./pkg/equilibrium_web_geo.js --outfile="$out/app.js" --log-level=warning
cp web-demo/index.html web-demo/app.css "$out/"
cp node_modules/leaflet/dist/leaflet.css "$out/"
mkdir -p "$out/images" && cp node_modules/leaflet/dist/images/* "$out/images/"
echo "map built: $out ($(du -sh "$out" | cut -f1))"
