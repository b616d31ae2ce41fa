// One `reading` event per reading, the way most Socket.IO apps are written.
// Usage: see peer.js.
"use strict";

const { ALL, room, serve } = require("./peer");

serve((dashboard, readings) => {
  for (const reading of readings) {
    // Both rooms in one emit: a client in both gets the reading once.
    dashboard.to([ALL, room(reading.device_id)]).emit("reading", reading);
  }
});
