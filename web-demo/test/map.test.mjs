// The map in real headless Chromium (Debian's, driven by playwright-core)
// against the real worker under `wrangler dev`: cells render, a pushed
// generation recolours a cell without a reload, a quote shows its price
// and breakdown and confirms. Saves a screenshot and prints its path.
//
// Run: node --test web-demo/test/   (after scripts/build-worker.sh and
// web-demo/build.sh; scripts/test.sh does all of it).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
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

function grid(generation, multiplier) {
  const cells = [
    { cell: HOT_CELL, multiplier, supply: 2, demand: 9, trend: "increasing" },
    { cell: "80858094", multiplier: 1.0, supply: 5, demand: 1, trend: "stable" },
    { cell: "808580a4", multiplier: 1.3, supply: 4, demand: 6, trend: "stable" },
  ];
  return { format: 1, region: "sf", level: 13, generation, computed_at: Date.now(), cells };
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
  const push = async (g) => {
    const r = await fetch(`${edge}/admin/v1/grids/sf`, {
      method: "PUT", headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" }, body: JSON.stringify(g),
    });
    assert.equal(r.status, 200, await r.text());
  };
  await push(grid(1, 1.2));

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  // No internet here: the page runs without base tiles.
  await page.goto(`http://127.0.0.1:${sitePort}/?edge=${encodeURIComponent(edge)}&region=sf&tiles=off`);
  await page.waitForSelector("body[data-ready=true]", { timeout: 30000 });

  // Cells render, coloured by multiplier.
  const hot = `path[data-cell="${HOT_CELL}"]`;
  await page.waitForSelector(hot, { timeout: 30000 });
  const count = await page.locator("path[data-cell]").count();
  assert.ok(count > 0, "cells rendered");
  const before = await page.getAttribute(hot, "fill");
  assert.equal(before, "#a3d977"); // 1.2x
  assert.equal(await page.textContent("#generation"), "1");
  await waitFor("the live stream", async () => (await page.textContent("#live")) === "live", 30000);

  // A new generation recolours the cell without a reload.
  await push(grid(2, 2.2));
  await page.waitForFunction((sel) => document.querySelector(sel)?.getAttribute("fill") === "#e74c3c", hot, { timeout: 30000 });
  assert.equal(await page.textContent("#generation"), "2");

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
  assert.match(text, /surge x2\.2/);
  const km = Number(/· ([\d.]+) km/.exec(text)?.[1]);
  assert.ok(km > 0.5, `pickup and drop-off are distinct points (${km} km)`);
  await page.click(".quote-popup .confirm");
  await page.waitForFunction(() => document.querySelector(".confirm-status")?.textContent.startsWith("confirmed"), null, { timeout: 30000 });

  // Driver view: recommended cells near a click.
  await page.click("#mode-driver");
  await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  await page.waitForSelector(`#recommended li[data-zone="${HOT_CELL}"]`, { timeout: 30000 });

  const shot = join(tmpdir(), `equilibrium-map-${Date.now()}.png`);
  await page.screenshot({ path: shot });
  console.log(`screenshot: ${shot}`);
  assert.deepEqual(errors, [], "no console errors");
});
