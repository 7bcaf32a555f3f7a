// The map in real headless Chromium (Debian's, driven by playwright-core)
// against the running stack — the worker under `wrangler dev` and the real
// origin pushing to it: cells render, a generation the origin pushes
// recolours a cell without a reload, a dropped stream is noticed and
// reconnected (the next generations arrive on the new connection), a quote
// shows its price and breakdown and confirms, the driver view lists cells,
// an emergency cap set with wrangler shows on the map as the capped value,
// the page carries a Content-Security-Policy, and an error message that
// echoes a crafted ?region= renders as text. Saves a screenshot and prints
// its path.
//
// Run: node --test web-demo/test/   (after scripts/build-worker.sh,
// web-demo/build.sh and `cargo build -p equilibrium-origin`; scripts/test.sh
// does all of it).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { serve } from "../serve.mjs";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const TOKEN = "map-test-admin-token";
const HOT_CELL = "8085809c"; // 37.7749, -122.4194 at level 13

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

async function waitFor(what, fn, ms = 60000) {
  const start = Date.now();
  for (;;) {
    try { if (await fn()) return; } catch { /* not yet */ }
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const SF = [37.7749, -122.4194];

// The origin's producer token in this test.
const PRODUCER_TOKEN = "map-test-producer-token-0123";

async function post(url, body, type = "application/json") {
  const r = await fetch(url, {
    method: "POST",
    headers: { "content-type": type, authorization: `Bearer ${PRODUCER_TOKEN}` },
    body,
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return JSON.parse(text);
}

test("live surge map in headless Chromium", async (t) => {
  const edgePort = await freePort();
  const state = mkdtempSync(join(tmpdir(), "eq-map-"));
  const site = await serve(0);
  const sitePort = site.address().port;
  const wrangler = spawn(join(ROOT, "node_modules/.bin/wrangler"), [
    "dev", "--ip", "127.0.0.1", "--port", String(edgePort), "--persist-to", state,
    "--show-interactive-dev-session=false", "--log-level", "warn",
    "--var", `ADMIN_TOKEN:${TOKEN}`, "--var", "QUOTE_SIGNING_KEYS:m1:map-test-signing-key-0123",
    "--var", `CORS_ORIGINS:http://127.0.0.1:${sitePort}`,
  ], { cwd: ROOT, detached: true, stdio: "ignore", env: { ...process.env, WRANGLER_SEND_METRICS: "false" } });
  let browser;
  t.after(async () => {
    await browser?.close();
    site.close();
    try { process.kill(-wrangler.pid, "SIGKILL"); } catch { /* gone */ }
  });
  const edge = `http://127.0.0.1:${edgePort}`;
  await waitFor("the worker", async () => (await fetch(`${edge}/health`)).ok, 120000);

  // The real origin, ticking every 0.5 s, pushing to the worker.
  const originPort = await freePort();
  const origin = spawn(join(ROOT, "target/debug/origin"), [
    "serve", "--listen", `127.0.0.1:${originPort}`, "--database", join(state, "origin.sqlite"), "--edge-url", edge,
  ], { stdio: "ignore", env: { ...process.env, EQ_EDGE_TOKEN: TOKEN, EQ_TICK_SECONDS: "0.5",
    EQ_PRODUCER_TOKENS: PRODUCER_TOKEN, EQ_READER_TOKENS: "map-test-reader-token-0123" } });
  t.after(() => origin.kill("SIGKILL"));
  const originUrl = `http://127.0.0.1:${originPort}`;
  await waitFor("the origin", async () => (await fetch(`${originUrl}/health`)).ok, 60000);
  // Calm market: available drivers around the centre, no demand.
  const now = Date.now();
  const drivers = [0, 1, 2, 3, 4, 5].map((i) => JSON.stringify({
    driver_id: `d${i}`, latitude: SF[0] + (i - 2.5) * 0.004, longitude: SF[1] + (i % 3 - 1) * 0.006, available: true, timestamp: now,
  })).join("\n");
  await post(`${originUrl}/v1/ingest/locations`, drivers, "application/x-ndjson");
  await waitFor("the origin's grid at the edge", async () => {
    const h = await (await fetch(`${edge}/api/v1/pricing/heatmap?bounds=37.7,-122.5,37.85,-122.35&zoom=13&region=sf`)).json();
    return h.zones.some((z) => z.zone_id === HOT_CELL);
  }, 30000);

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  // The stream passes through Playwright's WebSocket route to the real
  // worker, so the test can drop a connection and watch the page recover.
  const streams = [];
  await page.routeWebSocket(/\/api\/v1\/pricing\/stream/, (ws) => {
    streams.push({ page: ws, server: ws.connectToServer() });
  });
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  // No internet here: the page runs without base tiles.
  const resp = await page.goto(`http://127.0.0.1:${sitePort}/?edge=${encodeURIComponent(edge)}&region=sf&tiles=off&fresh=3`);
  await page.waitForSelector("body[data-ready=true]", { timeout: 30000 });
  const csp = resp.headers()["content-security-policy"] ?? "";
  assert.match(csp, /script-src 'self' 'wasm-unsafe-eval'/, `the page's CSP: ${csp}`);
  assert.doesNotMatch(csp, /script-src[^;]*unsafe-inline/);

  // Cells render, coloured by multiplier.
  const hot = `path[data-cell="${HOT_CELL}"]`;
  await page.waitForSelector(hot, { timeout: 30000 });
  const count = await page.locator("path[data-cell]").count();
  assert.ok(count > 0, "cells rendered");
  const before = await page.getAttribute(hot, "fill");
  assert.equal(before, "#2ecc71"); // 1.0x: drivers, no demand
  const genBefore = Number(await page.textContent("#generation"));
  assert.ok(genBefore > 0);
  await waitFor("the live stream", async () => (await page.textContent("#live")) === "live", 30000);

  // Demand at the centre: the origin's next generations surge the cell,
  // and the page recolours it from the WebSocket, without a reload.
  const demand = Array.from({ length: 40 }, (_, i) => ({ kind: "ride_request", latitude: SF[0], longitude: SF[1], timestamp: Date.now() + i }));
  await post(`${originUrl}/v1/ingest/demand`, JSON.stringify(demand));
  await page.waitForFunction((sel) => {
    const m = Number(document.querySelector(sel)?.getAttribute("data-multiplier"));
    return m >= 1.5;
  }, hot, { timeout: 30000 });
  const after = await page.getAttribute(hot, "fill");
  assert.notEqual(after, before, "the cell changed colour");
  assert.ok(Number(await page.textContent("#generation")) > genBefore);

  // The stream drops: the page says so, reconnects (backoff from 0.5 s) and
  // takes the next generations from the new connection.
  const noticed = page.waitForFunction(() => document.querySelector("#live")?.textContent === "reconnecting…",
    null, { polling: 20, timeout: 10000 });
  const dropped = streams.length;
  await streams[dropped - 1].server.close({ code: 1012, reason: "test: connection dropped" });
  await streams[dropped - 1].page.close({ code: 1012, reason: "test: connection dropped" });
  await noticed;
  await waitFor("a new stream", async () => streams.length > dropped && (await page.textContent("#live")) === "live", 30000);
  const genAtReconnect = Number(await page.textContent("#generation"));
  await waitFor("a generation over the new stream", async () => Number(await page.textContent("#generation")) > genAtReconnect, 30000);

  // Click pickup and drop-off: a quote with its breakdown; confirm it.
  const box = await page.locator("#map").boundingBox();
  await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.click(box.x + box.width / 2 + 120, box.y + box.height / 2 - 80);
  await page.waitForSelector(".quote-popup .final-fare", { timeout: 30000 });
  const fare = await page.textContent(".quote-popup .final-fare");
  assert.match(fare, /^\d+\.\d\d USD$/);
  const breakdown = await page.locator(".quote-popup .breakdown tr").count();
  assert.ok(breakdown >= 4, `breakdown has ${breakdown} rows`);
  const text = await page.textContent(".quote-popup");
  assert.match(text, /surge x\d\.\d on/);
  const km = Number(/· ([\d.]+) km/.exec(text)?.[1]);
  assert.ok(km > 0.5, `pickup and drop-off are distinct points (${km} km)`);
  await page.click(".quote-popup .confirm");
  await page.waitForFunction(() => document.querySelector(".confirm-status")?.textContent.startsWith("confirmed"), null, { timeout: 30000 });

  // Driver view: recommended cells near a click.
  await page.click("#mode-driver");
  await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  await page.waitForSelector(`#recommended li[data-zone="${HOT_CELL}"]`, { timeout: 30000 });

  // An emergency cap, set with the admin's command: the next generation the
  // stream brings shows the capped value on the map, as a quote charges it.
  const uncapped = Number(await page.getAttribute(hot, "data-multiplier"));
  assert.ok(uncapped > 1.1, `the hot cell surges above the cap before it is set (${uncapped})`);
  const put = spawnSync(join(ROOT, "node_modules/.bin/wrangler"), [
    "kv", "key", "put", "--local", "--binding", "CONFIG", "--persist-to", state, "emergency_cap", "1.1",
  ], { cwd: ROOT, env: { ...process.env, WRANGLER_SEND_METRICS: "false" } });
  assert.equal(put.status, 0, String(put.stderr));
  await page.waitForFunction((sel) => document.querySelector(sel)?.getAttribute("data-multiplier") === "1.1",
    hot, { timeout: 30000 });

  // The origin stops: no new generations, and the page says the grid is stale.
  assert.equal(await page.isHidden("#stale-warning"), true);
  origin.kill("SIGKILL");
  await page.waitForSelector("#stale-warning", { state: "visible", timeout: 30000 });

  // A crafted ?region= that the edge echoes in its error renders as text:
  // no element is created from it and its handler never runs.
  const crafted = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  crafted.on("pageerror", (e) => errors.push(String(e)));
  const markup = `<img src=x onerror="window.__xss=1">`;
  await crafted.goto(`http://127.0.0.1:${sitePort}/?edge=${encodeURIComponent(edge)}&region=${encodeURIComponent(markup)}&tiles=off`);
  await crafted.waitForSelector("body[data-ready=true]", { timeout: 30000 });
  const cbox = await crafted.locator("#map").boundingBox();
  await crafted.mouse.click(cbox.x + cbox.width / 2, cbox.y + cbox.height / 2);
  await crafted.mouse.click(cbox.x + cbox.width / 2 + 120, cbox.y + cbox.height / 2 - 80);
  await crafted.waitForSelector("#quote .error", { timeout: 30000 });
  const shown = await crafted.textContent("#quote .error");
  assert.ok(shown.includes("<img"), `the edge's message, as text: ${shown}`);
  assert.equal(await crafted.locator("#quote img").count(), 0, "no element from the message");
  assert.equal(await crafted.evaluate(() => window.__xss), undefined, "no script from the message");
  await crafted.close();

  const shot = join(tmpdir(), `equilibrium-map-${Date.now()}.png`);
  await page.screenshot({ path: shot });
  console.log(`screenshot: ${shot}`);
  assert.deepEqual(errors, [], "no console errors");
});
