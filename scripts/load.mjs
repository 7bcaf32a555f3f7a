// A closed-loop HTTP load generator whose latencies can be trusted, for
// scripts/bench-edge.sh and scripts/soak.sh.
//
//   node scripts/load.mjs <url> <connections> <seconds> [body file]
//   node scripts/load.mjs pool <report.json>...
//
// Keeps <connections> keep-alive connections busy, one request in flight on
// each (a POST of the body file's bytes as JSON if given, else a GET), for
// <seconds>, and prints one JSON line:
//   {"requests", "seconds", "rps", "p50_ms", "p90_ms", "p99_ms", "max_ms",
//    "mean_ms", "little_ms", "non2xx", "errors", "growth", "buckets"}
// (the last two: the latency histogram, so that rounds can be pooled).
// `pool` merges the histograms of such reports (one JSON line per file) and
// prints {"requests", "p50_ms", "p90_ms", "p99_ms", "max_ms"} over all of
// their requests.
// Latency runs from writing a request to its response's last byte, on the
// monotonic clock, recorded in log buckets 1 % wide (so percentiles are
// within 1 %), memory constant however long the run.
//
// Why not wrk's latency figures: on this project's machines wrk 4.1's
// latencies break Little's law. With one request in flight per connection,
// the latencies on a connection sum to at most the run's length, so the
// mean latency can be at most connections / throughput (`little_ms`). wrk
// reported a mean of 60 ms at 5,600 req/s over 16 connections, where at most
// 2.9 ms is possible, and 127 µs at 11,500 req/s over one connection to a
// Node server, where at most 87 µs is. This client's mean equals
// `little_ms` to within 1 %; the run fails if it exceeds it by more than
// 5 % (its own latencies would then be wrong). Throughput counts from both
// tools agree with the server's own count.
import http from 'node:http';
import { readFileSync } from 'node:fs';

// Log buckets: bucket b holds latencies in [GROWTH^b, GROWTH^(b+1)) µs.
const GROWTH = 1.01;

// The p-th percentile in ms of a histogram given as [bucket, count] pairs in
// bucket order: the upper edge of the bucket holding that rank (so within
// 1 %), never above the largest latency seen.
function percentile(pairs, count, maxUs, p) {
  const rank = Math.ceil((p / 100) * count);
  let seen = 0;
  for (const [b, n] of pairs) {
    seen += n;
    if (seen >= rank) return Math.min(GROWTH ** (b + 1), maxUs) / 1e3;
  }
  return maxUs / 1e3;
}

const round = (x) => Math.round(x * 1000) / 1000;

if (process.argv[2] === 'pool') {
  const reports = process.argv.slice(3).map((f) => JSON.parse(readFileSync(f, 'utf8')));
  if (reports.length === 0 || reports.some((r) => r.growth !== GROWTH)) {
    console.error('usage: load.mjs pool <report.json>... (reports of this version of load.mjs)');
    process.exit(2);
  }
  const merged = new Map();
  for (const r of reports) for (const [b, n] of r.buckets) merged.set(b, (merged.get(b) ?? 0) + n);
  const pairs = [...merged].sort(([a], [b]) => a - b);
  const count = reports.reduce((s, r) => s + r.requests, 0);
  const maxUs = Math.max(...reports.map((r) => r.max_ms)) * 1e3;
  const at = (p) => round(percentile(pairs, count, maxUs, p));
  console.log(JSON.stringify({ requests: count, p50_ms: at(50), p90_ms: at(90), p99_ms: at(99), max_ms: round(maxUs / 1e3) }));
  process.exit(0);
}

const [url, connArg, secsArg, bodyFile] = process.argv.slice(2);
const connections = Number(connArg);
const seconds = Number(secsArg);
if (!url || !(connections >= 1) || !(seconds > 0)) {
  console.error('usage: load.mjs <url> <connections> <seconds> [body file]');
  process.exit(2);
}
const target = new URL(url);
const body = bodyFile ? readFileSync(bodyFile) : null;
const headers = body ? { 'content-type': 'application/json', 'content-length': body.length } : {};
const agent = new http.Agent({ keepAlive: true, maxSockets: connections });

const buckets = new Float64Array(Math.ceil(Math.log(600e6) / Math.log(GROWTH)) + 1);
const bucketOf = (us) => Math.min(buckets.length - 1, Math.max(0, Math.floor(Math.log(Math.max(us, 1)) / Math.log(GROWTH))));
let count = 0;
let sumUs = 0;
let maxUs = 0;
let non2xx = 0;
let errors = 0;

const started = process.hrtime.bigint();
const deadline = started + BigInt(Math.round(seconds * 1e9));
let ended = null;

function record(sentAt, status) {
  const now = process.hrtime.bigint();
  if (now > deadline) return false;
  const us = Number(now - sentAt) / 1e3;
  buckets[bucketOf(us)] += 1;
  count += 1;
  sumUs += us;
  if (us > maxUs) maxUs = us;
  if (status < 200 || status > 299) non2xx += 1;
  return true;
}

function send() {
  const sentAt = process.hrtime.bigint();
  if (sentAt > deadline) return finishOne();
  const req = http.request(
    { host: target.hostname, port: target.port, path: target.pathname + target.search, method: body ? 'POST' : 'GET', agent, headers },
    (res) => {
      res.on('data', () => {});
      res.on('end', () => (record(sentAt, res.statusCode) ? send() : finishOne()));
    },
  );
  req.on('error', () => {
    errors += 1;
    send();
  });
  req.end(body ?? undefined);
}

let running = connections;
function finishOne() {
  running -= 1;
  if (running > 0) return;
  ended = process.hrtime.bigint();
  report();
}

function report() {
  const elapsed = Math.min(Number(ended - started), seconds * 1e9) / 1e9;
  const rps = count / elapsed;
  const meanMs = count ? sumUs / count / 1e3 : 0;
  const littleMs = rps ? (connections / rps) * 1e3 : 0;
  const pairs = [...buckets.entries()].filter(([, n]) => n > 0);
  const at = (p) => round(percentile(pairs, count, maxUs, p));
  console.log(
    JSON.stringify({
      requests: count,
      seconds: round(elapsed),
      rps: Math.round(rps),
      p50_ms: at(50),
      p90_ms: at(90),
      p99_ms: at(99),
      max_ms: round(maxUs / 1e3),
      mean_ms: round(meanMs),
      little_ms: round(littleMs),
      non2xx,
      errors,
      // The histogram, for pooling rounds: [bucket, count] pairs, bucket b
      // holding latencies in [growth^b, growth^(b+1)) µs.
      growth: GROWTH,
      buckets: pairs,
    }),
  );
  agent.destroy();
  if (count === 0) {
    console.error(`load.mjs: no response from ${url} in ${seconds} s (${errors} errors)`);
    process.exit(1);
  }
  if (meanMs > littleMs * 1.05) {
    console.error(`load.mjs: mean latency ${meanMs} ms exceeds connections/throughput ${littleMs} ms: latencies are wrong`);
    process.exit(1);
  }
}

for (let i = 0; i < connections; i++) send();
