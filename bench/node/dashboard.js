// One dashboard on a hub's /dashboard namespace, subscribed to everything:
// the connection every Node.js load script of the benchmarks opens.
"use strict";

const http = require("node:http");
const { io } = require("socket.io-client");

// Calls take(readings) for every frame (or single reading) that arrives.
// Returns {socket, connected, ready}: ready resolves once subscribed, or
// once the connection failed (connected stays false).
function dashboard(url, transport, take) {
  const client = { connected: false };
  // forceNew: without it every io() to the same URL shares one connection.
  // Polling keeps its HTTP connections alive, as browsers do (Node's
  // engine.io-client otherwise opens a new TCP connection for every request).
  const agent = transport === "polling" ? new http.Agent({ keepAlive: true }) : false;
  const socket = io(`${url}/dashboard`, { transports: [transport], forceNew: true, reconnection: false, agent });
  socket.on("reading", (reading) => take([reading]));
  socket.on("readings", (frame) => take(frame.readings));
  client.ready = new Promise((resolve) => {
    socket.on("connect", async () => {
      await socket.emitWithAck("subscribe", { devices: ["*"] });
      client.connected = true;
      resolve();
    });
    socket.on("connect_error", resolve);
  });
  socket.on("disconnect", () => {
    client.connected = false;
  });
  client.socket = socket;
  return client;
}

module.exports = { dashboard };
