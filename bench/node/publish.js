// A paced MQTT publisher, the same load for every server.
//
//   node publish.js MQTT_URL DEVICES MSG_PER_S SECONDS [QOS] [FROM TO]
//
// Sends envelopes {"ts": <now ms>, "values": {temperature, humidity,
// pressure}} round-robin for devices bench-0..bench-(D-1) to
// devices/<id>/telemetry, at MSG_PER_S in total, for SECONDS. Prints
// {sent, in_window, rate}: in_window counts messages with FROM <= ts < TO,
// which is what every dashboard should then receive (x 3 readings).
"use strict";

const mqtt = require("mqtt");

const [url, devicesArg, rateArg, secondsArg, qosArg, fromArg, toArg] = process.argv.slice(2);
const devices = Number(devicesArg);
const rate = Number(rateArg);
const seconds = Number(secondsArg);
const qos = Number(qosArg || 1);
const from = Number(fromArg || 0);
const to = Number(toArg || Infinity);
const total = Math.floor(rate * seconds);
const topics = Array.from({ length: devices }, (_, i) => `devices/bench-${i}/telemetry`);

const client = mqtt.connect(url);
client.on("connect", () => {
  const started = Date.now();
  let sent = 0;
  let inWindow = 0;
  // Every millisecond or so, send what is due by now: steady pacing without a
  // timer per message; after a stall it catches up, keeping the average rate.
  const tick = setInterval(() => {
    const now = Date.now();
    const due = Math.min(total, Math.floor(((now - started) * rate) / 1000));
    for (; sent < due; sent++) {
      const ts = Date.now();
      const body = {
        ts,
        values: { temperature: 20 + (sent % 100) / 10, humidity: 40 + (sent % 50), pressure: 101325 - (sent % 200) },
      };
      if (ts >= from && ts < to) inWindow++;
      client.publish(topics[sent % devices], JSON.stringify(body), { qos });
    }
    if (sent >= total) {
      clearInterval(tick);
      const took = (Date.now() - started) / 1000;
      // end() waits for the broker's PUBACKs of what is still in flight.
      client.end(false, () => {
        console.log(JSON.stringify({ sent, in_window: inWindow, rate: sent / took }));
      });
    }
  }, 1);
});
