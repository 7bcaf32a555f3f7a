// The live surge map: cells from the edge's heatmap, drawn with polygons
// computed by the pricing core (wasm), recoloured on every grid generation
// pushed over the edge's WebSocket; click for a quote, or switch to the
// driver view for recommended cells.
import L from "leaflet";
import init, { cell_polygon, multiplier_color } from "./pkg/equilibrium_web_geo.js";

const params = new URLSearchParams(location.search);
const EDGE = (params.get("edge") || "http://127.0.0.1:8787").replace(/\/$/, "");
const REGION = params.get("region") || "sf";
const TILES = params.get("tiles") || "https://tile.openstreetmap.org/{z}/{x}/{y}.png";
// Grid age beyond which the page warns (the edge's GRID_FRESH_SECONDS).
const FRESH_S = Number(params.get("fresh") || 30);
const CENTER = [Number(params.get("lat") || 37.7749), Number(params.get("lng") || -122.4194)];

const $ = (id) => document.getElementById(id);
const cells = new Map(); // token -> { polygon, multiplier }
let grid = { generation: 0, computed_at: 0, stale: false };
let mode = "rider";
let pickup = null;
let markers = [];

function fmtMoney(x, cur) { return `${Number(x).toFixed(2)} ${cur}`; }

// Builds an element; strings become text nodes, never HTML, so nothing the
// edge (or the URL) says can add markup to the page.
function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "style") Object.assign(e.style, v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}

function show(id, ...children) { $(id).replaceChildren(...children); }

function legend() {
  const stops = [1.0, 1.2, 1.4, 1.6, 2.0, 2.5, 3.0];
  show("legend", el("b", {}, "Surge"), ...stops.map((m) => el("div", {},
    el("span", { style: { background: multiplier_color(m) } }),
    `${m.toFixed(1)}×${m === 3.0 ? " and above" : ""}`)));
}

function drawCell(map, token, multiplier, info) {
  const color = multiplier_color(multiplier);
  let c = cells.get(token);
  if (!c) {
    const v = cell_polygon(token);
    if (v.length !== 8) return;
    const latlngs = [[v[0], v[1]], [v[2], v[3]], [v[4], v[5]], [v[6], v[7]]];
    const polygon = L.polygon(latlngs, { color: "#555", weight: 1, fillOpacity: 0.45, fillColor: color, className: "cell" }).addTo(map);
    polygon.getElement()?.setAttribute("data-cell", token);
    // A click on a cell bubbles to the map (Leaflet's default): quotes anywhere.
    c = { polygon, multiplier };
    cells.set(token, c);
  }
  c.multiplier = multiplier;
  c.polygon.setStyle({ fillColor: color });
  const path = c.polygon.getElement();
  if (path) { path.setAttribute("data-multiplier", String(multiplier)); path.setAttribute("data-color", color); }
  c.polygon.bindTooltip(el("span", {}, `${multiplier.toFixed(1)}× · supply ${info.supply} · demand ${info.demand} · ${info.trend}`));
}

function showGrid(map, g) {
  if (g.generation < grid.generation) return; // never go back
  grid = { generation: g.generation, computed_at: g.computed_at, stale: false };
  for (const c of g.cells) drawCell(map, c.cell, c.multiplier, c);
  $("generation").textContent = String(g.generation);
  $("region").textContent = g.region;
  tickAge();
}

function tickAge() {
  if (!grid.computed_at) return;
  const age = Math.max(0, (Date.now() - grid.computed_at) / 1000);
  $("age").textContent = `${age.toFixed(0)} s`;
  $("stale-warning").hidden = age <= FRESH_S;
}

async function loadHeatmap(map) {
  const b = map.getBounds();
  const bounds = [b.getSouth(), b.getWest(), b.getNorth(), b.getEast()].map((x) => x.toFixed(5)).join(",");
  const r = await fetch(`${EDGE}/api/v1/pricing/heatmap?bounds=${bounds}&zoom=${Math.max(13, map.getZoom())}&region=${encodeURIComponent(REGION)}`);
  if (!r.ok) return;
  const h = await r.json();
  if (h.generation < grid.generation) return;
  for (const z of h.zones) drawCell(map, z.zone_id, z.surge_multiplier, { supply: z.supply_count, demand: z.demand_count, trend: z.trend });
  grid = { generation: h.generation, computed_at: h.last_updated ? Date.parse(h.last_updated) : 0 };
  $("generation").textContent = String(h.generation);
  $("region").textContent = h.region;
  tickAge();
}

function connect(map, attempt = 0) {
  const ws = new WebSocket(`${EDGE.replace(/^http/, "ws")}/api/v1/pricing/stream?region=${encodeURIComponent(REGION)}`);
  ws.onopen = () => { attempt = 0; $("live").textContent = "live"; $("live").className = "on"; };
  ws.onmessage = (ev) => {
    try {
      const msg = JSON.parse(ev.data);
      if (msg.type === "grid") showGrid(map, msg.grid);
    } catch (_) { /* ignore non-grid messages */ }
  };
  ws.onclose = () => {
    $("live").textContent = "reconnecting…"; $("live").className = "off";
    const delay = Math.min(10000, 500 * 2 ** attempt);
    setTimeout(() => connect(map, attempt + 1), delay);
  };
}

function clearMarkers(map) { for (const m of markers) map.removeLayer(m); markers = []; }

async function quote(map, from, to) {
  show("quote", "Pricing…");
  const r = await fetch(`${EDGE}/api/v1/pricing/estimate`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      pickup_location: { latitude: from.lat, longitude: from.lng },
      dropoff_location: { latitude: to.lat, longitude: to.lng },
      vehicle_type: "standard", region: REGION,
    }),
  });
  const q = await r.json();
  if (!r.ok) { show("quote", el("p", { className: "error" }, q.error?.message ?? "error")); return; }
  const f = q.fare_breakdown;
  const status = el("span", { className: "confirm-status" });
  const confirm = el("button", { className: "confirm" }, "Confirm at this price");
  show("quote", el("div", { className: "quote-popup" },
    el("div", { className: "final-fare" }, fmtMoney(q.final_fare, q.currency)),
    el("div", {}, `${q.surge_multiplier.toFixed(1)}× surge (${q.surge_source.source}) · ${q.estimated_distance} km · ${q.estimated_duration} min`),
    el("table", { className: "breakdown" },
      ...f.explanation.map((line) => el("tr", {}, el("td", { colSpan: 2 }, line))),
      el("tr", {}, el("td", {}, el("b", {}, "Total")), el("td", {}, el("b", {}, fmtMoney(f.total, q.currency))))),
    confirm, " ", status));
  L.popup().setLatLng(from)
    .setContent(el("span", {}, el("b", {}, fmtMoney(q.final_fare, q.currency)), ` · ${q.surge_multiplier.toFixed(1)}×`))
    .openOn(map);
  confirm.onclick = async () => {
    const c = await fetch(`${EDGE}/api/v1/quotes/${encodeURIComponent(q.quote_id)}/confirm`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ quote_token: q.quote_token }),
    });
    const body = await c.json();
    status.textContent = c.ok
      ? `confirmed at ${fmtMoney(body.final_fare, body.currency)}`
      : `refused: ${body.error?.code}`;
  };
}

async function recommend(map, at) {
  const r = await fetch(`${EDGE}/api/v1/driver/heatmap?lat=${at.lat}&lng=${at.lng}&radius=5000&region=${encodeURIComponent(REGION)}`);
  const d = await r.json();
  if (!r.ok) { show("recommended", el("li", { className: "error" }, d.error?.message ?? "error")); return; }
  show("recommended", ...(d.recommended_zones.length
    ? d.recommended_zones.map((z) => el("li", { dataset: { zone: z.zone_id } },
      `${z.surge_multiplier.toFixed(1)}× · ${(z.distance_meters / 1000).toFixed(1)} km · ${fmtMoney(z.estimated_earnings_per_hour, d.currency)}/h · ${z.demand_trend}`))
    : [el("li", {}, "No surge nearby.")]));
  for (const z of d.recommended_zones) {
    const c = cells.get(z.zone_id);
    if (c) c.polygon.setStyle({ weight: 3, color: "#1f4e99" });
  }
}

async function main() {
  await init();
  legend();
  const map = L.map("map", { preferCanvas: false }).setView(CENTER, 13);
  if (TILES !== "off") {
    // Optional base tiles: without internet the map keeps a plain background.
    const tiles = L.tileLayer(TILES, { maxZoom: 19, attribution: "© OpenStreetMap contributors" }).addTo(map);
    let failures = 0;
    tiles.on("tileerror", () => { if (++failures > 4) map.removeLayer(tiles); });
  }
  map.on("click", async (e) => {
    if (mode === "driver") { clearMarkers(map); markers.push(L.circleMarker(e.latlng, { radius: 6 }).addTo(map)); await recommend(map, e.latlng); return; }
    if (!pickup) {
      clearMarkers(map);
      pickup = e.latlng;
      markers.push(L.circleMarker(e.latlng, { radius: 6, color: "#2e8b57" }).addTo(map));
      $("hint").textContent = "Now click the drop-off.";
    } else {
      const from = pickup; pickup = null;
      markers.push(L.circleMarker(e.latlng, { radius: 6, color: "#b33" }).addTo(map));
      $("hint").textContent = "Click the map to set the pickup, then the drop-off.";
      await quote(map, from, e.latlng);
    }
  });
  $("mode-rider").onclick = () => { mode = "rider"; $("mode-rider").className = "active"; $("mode-driver").className = ""; $("hint").textContent = "Click the map to set the pickup, then the drop-off."; };
  $("mode-driver").onclick = () => { mode = "driver"; $("mode-driver").className = "active"; $("mode-rider").className = ""; $("hint").textContent = "Click where you are: recommended cells appear."; };
  map.on("moveend", () => loadHeatmap(map));
  await loadHeatmap(map);
  connect(map);
  setInterval(tickAge, 1000);
  document.body.dataset.ready = "true";
}

main().catch((e) => { document.body.dataset.error = String(e); console.error(e); });
