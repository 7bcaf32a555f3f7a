// scripts/load.mjs, the benchmarks' load generator, against a Node server
// in this process that counts what it answers: the client's request count
// agrees with the server's (less at most the requests in flight when the
// run ends), its latencies keep within Little's law, POSTs carry the body,
// non-2xx answers and refused connections are counted, bad arguments exit
// 2, and `pool` merges reports' histograms. Nothing here depends on how fast
// the machine is.
//
// Run: node --test scripts/load.test.mjs (scripts/test.sh does).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const LOAD = fileURLToPath(new URL("./load.mjs", import.meta.url));

function run(...args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [LOAD, ...args]);
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("exit", (code) => resolve({ code, out, err }));
  });
}

async function counting(handler) {
  const seen = { requests: 0, bodies: [] };
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      seen.requests += 1;
      if (body) seen.bodies.push(body);
      handler(req, res);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, seen, url: `http://127.0.0.1:${server.address().port}` };
}

const close = (server) => new Promise((resolve) => server.close(resolve));

test("counts what the server answered and keeps its latencies within Little's law", async () => {
  const { server, seen, url } = await counting((_, res) => res.end('{"status":"ok"}'));
  const { code, out, err } = await run(`${url}/health`, "4", "2");
  server.closeAllConnections();
  await close(server);
  assert.equal(code, 0, err);
  const r = JSON.parse(out);
  assert.ok(r.requests > 0);
  assert.ok(seen.requests >= r.requests && seen.requests <= r.requests + 4, `server ${seen.requests}, client ${r.requests}`);
  assert.ok(r.mean_ms <= r.little_ms * 1.05, `mean ${r.mean_ms} ms, at most ${r.little_ms} ms possible`);
  assert.ok(r.p50_ms <= r.p90_ms && r.p90_ms <= r.p99_ms && r.p99_ms <= r.max_ms, out);
  assert.equal(r.non2xx, 0);
  assert.equal(r.errors, 0);
});

test("posts the body file and counts non-2xx answers", async () => {
  const dir = mkdtempSync(join(tmpdir(), "load-test-"));
  const body = join(dir, "body.json");
  writeFileSync(body, '{"vehicle_type":"standard"}');
  const { server, seen, url } = await counting((req, res) => {
    res.statusCode = req.method === "POST" && req.headers["content-type"] === "application/json" ? 503 : 200;
    res.end();
  });
  const { code, out, err } = await run(`${url}/estimate`, "2", "1", body);
  server.closeAllConnections();
  await close(server);
  assert.equal(code, 0, err);
  const r = JSON.parse(out);
  assert.ok(r.requests > 0);
  assert.equal(r.non2xx, r.requests);
  assert.ok(seen.bodies.length >= r.requests);
  assert.ok(seen.bodies.every((b) => b === '{"vehicle_type":"standard"}'));
});

test("pool gives percentiles over every request of its reports", async () => {
  const dir = mkdtempSync(join(tmpdir(), "load-pool-"));
  // Two rounds: 99 fast requests (bucket 100, ~2.7 µs) and one slow (bucket
  // 1000, ~21 ms), then 100 all slow. Alone, the first round's p99 is fast;
  // pooled, even the p50 is slow.
  const growth = 1.01;
  const fast = { requests: 100, max_ms: 21000, growth, buckets: [[100, 99], [1000, 1]] };
  const slow = { requests: 100, max_ms: 21000, growth, buckets: [[1000, 100]] };
  writeFileSync(join(dir, "fast.json"), JSON.stringify(fast));
  writeFileSync(join(dir, "slow.json"), JSON.stringify(slow));
  const edge = (b) => Math.round(growth ** (b + 1) / 1e3 * 1000) / 1000;

  const one = await run("pool", join(dir, "fast.json"));
  assert.equal(one.code, 0, one.err);
  assert.deepEqual(JSON.parse(one.out), { requests: 100, p50_ms: edge(100), p90_ms: edge(100), p99_ms: edge(100), max_ms: 21000 });

  const both = await run("pool", join(dir, "fast.json"), join(dir, "slow.json"));
  assert.equal(both.code, 0, both.err);
  assert.deepEqual(JSON.parse(both.out), { requests: 200, p50_ms: edge(1000), p90_ms: edge(1000), p99_ms: edge(1000), max_ms: 21000 });

  writeFileSync(join(dir, "other.json"), JSON.stringify({ ...slow, growth: 1.02 }));
  for (const args of [["pool"], ["pool", join(dir, "fast.json"), join(dir, "other.json")]]) {
    const bad = await run(...args);
    assert.equal(bad.code, 2, `args ${JSON.stringify(args)}`);
    assert.match(bad.err, /usage/);
  }
});

test("a server that is not there is a failed run, and bad arguments are a usage error", async () => {
  const { server, url } = await counting((_, res) => res.end());
  await close(server);
  const gone = await run(`${url}/health`, "2", "1");
  assert.equal(gone.code, 1);
  assert.match(gone.err, /no response/);
  assert.ok(JSON.parse(gone.out).errors > 0);

  for (const args of [[], [`${url}/`], [`${url}/`, "0", "1"], [`${url}/`, "2", "x"]]) {
    const bad = await run(...args);
    assert.equal(bad.code, 2, `args ${JSON.stringify(args)}`);
    assert.match(bad.err, /usage/);
  }
});
