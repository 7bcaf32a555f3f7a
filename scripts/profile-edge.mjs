// Records a CPU profile of the worker's isolate through wrangler dev's
// inspector, for scripts/profile-edge.sh.
//
//   node scripts/profile-edge.mjs <inspector port> <seconds> <out.cpuprofile>
//
// Writes the raw profile (open it in Chrome DevTools → Performance) and
// prints one JSON line: the sampling interval and, per function, its self
// and inclusive sample counts. Wasm functions keep their Rust names (the
// worker's wasm has a name section); JS glue is named by its line.
import { writeFileSync } from 'node:fs';
import WebSocket from 'ws';

const [port, secs, out] = process.argv.slice(2);
if (!port || !secs || !out) {
  console.error('usage: profile-edge.mjs <inspector port> <seconds> <out.cpuprofile>');
  process.exit(2);
}

const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
if (targets.length === 0) throw new Error(`no inspector target on port ${port}`);
const ws = new WebSocket(targets[0].webSocketDebuggerUrl);
await new Promise((resolve, reject) => {
  ws.once('open', resolve);
  ws.once('error', reject);
});
let nextId = 0;
const pending = new Map();
ws.on('message', (raw) => {
  const msg = JSON.parse(raw);
  if (msg.id && pending.has(msg.id)) {
    pending.get(msg.id)(msg);
    pending.delete(msg.id);
  }
});
const call = (method, params = {}) =>
  new Promise((resolve) => {
    const id = ++nextId;
    pending.set(id, resolve);
    ws.send(JSON.stringify({ id, method, params }));
  });

await call('Profiler.enable');
await call('Profiler.setSamplingInterval', { interval: 100 });
await call('Profiler.start');
await new Promise((r) => setTimeout(r, Number(secs) * 1000));
const reply = await call('Profiler.stop');
ws.close();
if (!reply.result) throw new Error(`Profiler.stop failed: ${JSON.stringify(reply.error)}`);
const profile = reply.result.profile;
writeFileSync(out, JSON.stringify(profile));

const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const name = (node) => {
  const f = node.callFrame;
  // Drop Rust's hash suffixes so two builds compare by name.
  const fn = (f.functionName || '(anonymous)')
    .replace(/::h[0-9a-f]{16}/, '')
    .replace(/\[[0-9a-f]{16}\]/g, '');
  return f.url.startsWith('wasm') || !f.url ? fn : `${fn} (js line ${f.lineNumber + 1})`;
};
const hits = new Map();
for (const s of profile.samples) hits.set(s, (hits.get(s) ?? 0) + 1);
const self = {};
const inclusive = {};
for (const [id, count] of hits) {
  const leaf = name(byId.get(id));
  self[leaf] = (self[leaf] ?? 0) + count;
  const seen = new Set();
  for (let x = id; x; x = parent.get(x)) {
    const k = name(byId.get(x));
    if (!seen.has(k)) {
      seen.add(k);
      inclusive[k] = (inclusive[k] ?? 0) + count;
    }
  }
}
const intervalUs = (profile.endTime - profile.startTime) / Math.max(profile.samples.length, 1);
console.log(JSON.stringify({ interval_us: intervalUs, samples: profile.samples.length, self, inclusive }));
