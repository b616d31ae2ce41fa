// N dashboards that stay connected for a soak run and report every interval.
//
//   node soak_clients.js URL N INTERVAL_MS
//
// Connects N websocket clients to /dashboard, subscribes each to ["*"] and
// prints {"ready": true, "connected": N}. Then, every INTERVAL_MS, prints one
// line {t, connected, received, histogram: {ms: count}} for the readings that
// arrived in that interval (latency = Date.now() - ts, 1 ms buckets, over all
// clients). Runs until stdin closes or SIGTERM.
"use strict";

const { dashboard } = require("./dashboard");

const [url, n, intervalArg] = process.argv.slice(2);
const count = Number(n);
const intervalMs = Number(intervalArg || 1000);
const MAX_MS = 60000; // latencies above this share the last bucket

let histogram = new Map();
let received = 0;
const clients = [];

function take(readings) {
  const now = Date.now();
  received += readings.length;
  for (const reading of readings) {
    const ms = Math.min(MAX_MS, Math.max(0, now - reading.ts));
    histogram.set(ms, (histogram.get(ms) || 0) + 1);
  }
}

for (let i = 0; i < count; i++) {
  clients.push(dashboard(url, "websocket", take));
}

function report() {
  const line = JSON.stringify({
    t: Date.now(),
    connected: clients.filter((c) => c.connected).length,
    received,
    histogram: Object.fromEntries(histogram),
  });
  histogram = new Map();
  received = 0;
  process.stdout.write(line + "\n");
}

function stop() {
  for (const c of clients) c.socket.disconnect();
  process.exit(0);
}

Promise.all(clients.map((c) => c.ready)).then(() => {
  console.log(JSON.stringify({ ready: true, connected: clients.filter((c) => c.connected).length }));
  setInterval(report, intervalMs);
  process.stdin.on("end", stop);
  process.stdin.resume();
});
process.on("SIGTERM", stop);
