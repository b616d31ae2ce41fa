// N dashboards on one URL's /dashboard, the same load for every server.
//
//   node clients.js URL N websocket|polling [DRAIN_MS]
//
// Connects N clients (each its own connection), subscribes them to ["*"] and
// prints {"ready": ...}. Then reads one line "FROM TO" on stdin: the window,
// in epoch ms of the readings' ts, that is measured (the publisher stamps ts
// when it sends, so readings sent during the warm-up are left out whenever
// they arrive). Each reading in the window counts once per client, with the
// latency Date.now() - ts. Ends when every client has seen a reading from
// after TO (readings arrive in order), or DRAIN_MS after TO, and prints
// {clients, connected, complete, received, min_received, per_second, p50,
// p90, p99, max, histogram: {ms: count}} (per_second is per client).
"use strict";

const readline = require("node:readline");
const { dashboard } = require("./dashboard");

const [url, n, transport, drainArg] = process.argv.slice(2);
const count = Number(n);
const drainMs = Number(drainArg || 5000);
const MAX_MS = 60000; // latencies above this share the last bucket

// A histogram in 1 ms buckets rather than a list: the batching server
// delivers millions of readings per second to this one process.
const histogram = new Uint32Array(MAX_MS + 1);
let from = Infinity;
let to = Infinity;

const clients = [];
for (let i = 0; i < count; i++) {
  const counts = { received: 0, last: 0 };
  const client = dashboard(url, transport, (readings) => {
    const now = Date.now();
    for (const reading of readings) {
      if (reading.ts >= from && reading.ts < to) {
        counts.received++;
        histogram[Math.min(MAX_MS, Math.max(0, now - reading.ts))]++;
      }
      counts.last = reading.ts;
    }
  });
  clients.push(Object.assign(client, { counts }));
}

function percentile(total, fraction) {
  const rank = Math.round(fraction * (total - 1));
  let seen = 0;
  for (let ms = 0; ms <= MAX_MS; ms++) {
    seen += histogram[ms];
    if (seen > rank) return ms;
  }
  return MAX_MS;
}

function finish() {
  const total = clients.reduce((sum, c) => sum + c.counts.received, 0);
  const sparse = {};
  let max = 0;
  histogram.forEach((value, ms) => {
    if (value) {
      sparse[ms] = value;
      max = ms;
    }
  });
  const seconds = (to - from) / 1000;
  const result = JSON.stringify({
    clients: count,
    connected: clients.filter((c) => c.connected).length,
    complete: clients.filter((c) => c.counts.last >= to).length,
    received: total,
    min_received: Math.min(...clients.map((c) => c.counts.received)),
    per_second: total / count / seconds,
    p50: percentile(total, 0.5),
    p90: percentile(total, 0.9),
    p99: percentile(total, 0.99),
    max,
    histogram: sparse,
  });
  for (const c of clients) c.socket.disconnect();
  // Exit once the line is written: a pipe takes 64 KiB at a time, and a wide
  // histogram is longer than that.
  process.stdout.write(result + "\n", () => process.exit(0));
}

Promise.all(clients.map((c) => c.ready)).then(() => {
  console.log(JSON.stringify({ ready: true, connected: clients.filter((c) => c.connected).length }));
  readline.createInterface({ input: process.stdin }).once("line", (line) => {
    [from, to] = line.split(" ").map(Number);
    const check = setInterval(() => {
      if (clients.every((c) => c.counts.last >= to) || Date.now() > to + drainMs) {
        clearInterval(check);
        finish();
      }
    }, 50);
  });
});
