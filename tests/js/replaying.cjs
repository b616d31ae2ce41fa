// A dashboard as a browser page would be: the official socket.io-client with
// reconnection on, an auth *callback* so every reconnect presents the latest
// cursor, and a subscribe on every connect.
// Usage: node replaying.cjs URL TRANSPORTS EPOCH SEQ COUNT
// Prints one JSON line per event and exits 0 once COUNT readings arrived and
// no replay is running.
"use strict";
const path = require("path");
const { io } = require(path.join(__dirname, "..", "..", "web", "node_modules", "socket.io-client"));

const [url, transports, epoch, seq, count] = process.argv.slice(2);
const wanted = Number(count);
const cursor = { epoch: epoch || null, seq: Number(seq) };
let received = 0;
let replaying = false;
const maybeDone = () => {
  if (received >= wanted && !replaying) {
    socket.close();
    process.exit(0);
  }
};
const say = (event, data) => process.stdout.write(JSON.stringify({ event, ...data }) + "\n");

const socket = io(url + "/dashboard", {
  transports: transports.split(","),
  reconnectionDelay: 100,
  reconnectionDelayMax: 500,
  auth: (cb) => cb(cursor.epoch ? { cursor: { epoch: cursor.epoch, seq: cursor.seq } } : {}),
});
socket.on("connect", () => {
  say("connect", { transport: socket.io.engine.transport.name });
  socket.emit("subscribe", { devices: ["*"] }, (ack) => {
    if (!cursor.epoch || cursor.epoch !== ack.epoch) {
      cursor.epoch = ack.epoch;
      cursor.seq = ack.seq;
    }
    say("subscribed", { ack });
  });
});
socket.on("disconnect", (reason) => say("disconnect", { reason }));
socket.on("readings", (frame) => {
  for (const r of frame.readings) cursor.seq = Math.max(cursor.seq, r.seq);
  say("readings", frame);
  received += frame.readings.length;
  maybeDone();
});
socket.on("replay", (r) => {
  say("replay", r);
  replaying = r.state === "start";
  maybeDone();
});
socket.on("gap", (g) => say("gap", g));
setTimeout(() => {
  say("error", { message: `timeout with ${received} of ${wanted} readings` });
  process.exit(3);
}, 30000);
