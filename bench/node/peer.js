// What the two Node.js peers of the hub share: a Socket.IO server with the
// hub's /dashboard namespace, and an MQTT subscriber turning device messages
// into readings. No storage, no auth, no replay: the plain live fan-out a
// Node developer would write, to compare the hub against (bench/fanout.py).
//
//   node per_reading.js|batching.js [PORT] [MQTT_URL]   (or env PORT, MQTT_URL)
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const mqtt = require("mqtt");

const ALL = "all";
const room = (deviceId) => `device:${deviceId}`;

let seq = 0;

// Flat object {"temperature": 21.5} or envelope {ts, seq, values}; a value may
// also be {value, unit}. Anything else is dropped.
function readingsOf(topic, payload) {
  let body;
  try {
    body = JSON.parse(payload);
  } catch {
    return [];
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) return [];
  const envelope = body.values !== null && typeof body.values === "object";
  const values = envelope ? body.values : body;
  let ts = envelope && typeof body.ts === "number" ? body.ts : Date.now();
  if (ts < 1e12) ts *= 1000; // epoch seconds
  const deviceId = topic.split("/")[1];
  const readings = [];
  for (const [metric, raw] of Object.entries(values)) {
    const value = raw !== null && typeof raw === "object" ? raw.value : raw;
    if (typeof value === "number") {
      readings.push({ seq: ++seq, device_id: deviceId, metric, ts, value, unit: null });
    }
  }
  return readings;
}

// Calls deliver(dashboard, readings) for each MQTT message; prints one JSON
// line once it listens and is subscribed, which bench/fanout.py waits for.
function serve(deliver) {
  const port = Number(process.argv[2] || process.env.PORT || 3000);
  const brokerUrl = process.argv[3] || process.env.MQTT_URL || "mqtt://127.0.0.1:1883";
  const httpServer = http.createServer();
  const io = new Server(httpServer, { cors: { origin: "*" } });
  const dashboard = io.of("/dashboard");

  dashboard.on("connection", (socket) => {
    socket.on("subscribe", (data, ack) => {
      const devices = Array.isArray(data?.devices) ? data.devices.map(String) : [];
      for (const id of devices) socket.join(id === "*" ? ALL : room(id));
      if (typeof ack === "function") ack({ epoch: "node", seq: 0, devices });
    });
  });

  httpServer.listen(port, "127.0.0.1", () => {
    // QoS 0: nothing is stored, so there is nothing to acknowledge late.
    const client = mqtt.connect(brokerUrl);
    client.on("message", (topic, payload) => {
      const readings = readingsOf(topic, payload);
      if (readings.length) deliver(dashboard, readings);
    });
    client.subscribe("devices/+/telemetry", { qos: 0 }, (err) => {
      if (err) throw err;
      console.log(JSON.stringify({ ready: true, port }));
    });
  });
  return dashboard;
}

module.exports = { ALL, room, serve };
