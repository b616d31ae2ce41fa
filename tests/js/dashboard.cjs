// A dashboard driven by the official socket.io-client (from web/node_modules).
// Usage: node dashboard.cjs URL TRANSPORTS COUNT
// Prints one JSON line per event: {"event": "subscribed"|"readings"|"presence"|"error", ...}
// and exits 0 once COUNT readings have arrived.
"use strict";
const path = require("path");
const { io } = require(path.join(__dirname, "..", "..", "web", "node_modules", "socket.io-client"));

const [url, transports, count] = process.argv.slice(2);
const wanted = Number(count);
let received = 0;
const say = (event, data) => process.stdout.write(JSON.stringify({ event, ...data }) + "\n");

const socket = io(url + "/dashboard", {
  transports: transports.split(","),
  reconnection: false,
  auth: {},
});
socket.on("connect", () => {
  socket.emit("subscribe", { devices: ["*"] }, (ack) => {
    say("subscribed", { ack, transport: socket.io.engine.transport.name });
  });
});
socket.on("readings", (frame) => {
  say("readings", frame);
  received += frame.readings.length;
  if (received >= wanted) {
    socket.close();
    process.exit(0);
  }
});
socket.on("presence", (change) => say("presence", change));
socket.on("connect_error", (err) => {
  say("error", { message: err.message });
  process.exit(2);
});
setTimeout(() => {
  say("error", { message: `timeout with ${received} of ${wanted} readings` });
  process.exit(3);
}, 20000);
