// Readings buffered and sent as one `readings` frame per room every 20 ms
// (the hub's broadcast tick): the better-written Node server.
// Usage: see peer.js.
"use strict";

const { ALL, room, serve } = require("./peer");

const TICK_MS = 20;
let pending = [];

const dashboard = serve((_, readings) => {
  for (const reading of readings) pending.push(reading);
});

setInterval(() => {
  if (!pending.length) return;
  const readings = pending;
  pending = [];
  dashboard.to(ALL).emit("readings", { epoch: "node", readings, replay: false });
  // Clients that picked devices get theirs; only rooms that exist cost anything.
  const byDevice = new Map();
  for (const reading of readings) {
    const name = room(reading.device_id);
    if (!dashboard.adapter.rooms.has(name)) continue;
    if (!byDevice.has(name)) byDevice.set(name, []);
    byDevice.get(name).push(reading);
  }
  for (const [name, own] of byDevice) {
    dashboard.to(name).except(ALL).emit("readings", { epoch: "node", readings: own, replay: false });
  }
}, TICK_MS);
