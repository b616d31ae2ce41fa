// The first live page: devices with their latest values, and readings as they
// arrive. Every device-supplied string is set with textContent, never as HTML.
(() => {
  "use strict";
  const MAX_ROWS = 50;
  const params = new URLSearchParams(location.search);
  const state = { epoch: null, seq: null, count: 0, devices: new Map(), replay: null };

  const $ = (id) => document.getElementById(id);
  const text = (tag, value, cls) => {
    const el = document.createElement(tag);
    el.textContent = value;
    if (cls) el.className = cls;
    return el;
  };
  const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "-");

  const socket = io("/dashboard", {
    transports: params.get("transport") === "polling" ? ["polling"] : ["polling", "websocket"],
    // A function, so that every reconnect presents the latest cursor.
    auth: (cb) => cb({
      token: params.get("token") || "",
      ...(state.epoch ? { cursor: { epoch: state.epoch, seq: state.seq } } : {}),
    }),
  });

  const setState = (name) => {
    $("state").textContent = name;
    $("state").dataset.state = name.split(" ")[0];
  };
  const showTransport = () => {
    $("transport").textContent = socket.io.engine ? socket.io.engine.transport.name : "-";
  };

  socket.on("connect", () => {
    setState("connected");
    showTransport();
    socket.io.engine.on("upgrade", showTransport);
    socket.emit("subscribe", { devices: ["*"] }, (ack) => {
      if (!ack || ack.error) return;
      if (state.epoch !== ack.epoch) state.seq = ack.seq;
      state.epoch = ack.epoch;
      $("head").textContent = ack.seq;
    });
    loadDevices();
  });
  socket.on("disconnect", () => setState("reconnecting"));
  socket.on("connect_error", () => setState("reconnecting"));

  socket.on("replay", (r) => {
    if (r.state === "start") {
      state.replay = { total: r.count, got: 0 };
      setState(`replaying 0 of ${r.count}`);
    } else {
      state.replay = null;
      setState("connected");
    }
  });

  socket.on("gap", (g) => {
    $("notice").textContent = `missed seq ${g.from}–${g.to} (${g.reason}); history is in the HTTP API`;
  });

  socket.on("readings", (frame) => {
    if (frame.replay && state.replay) {
      state.replay.got += frame.readings.length;
      setState(`replaying ${state.replay.got} of ${state.replay.total}`);
      $("state").dataset.state = "replaying";
    }
    const tbody = $("readings").tBodies[0];
    for (const r of frame.readings) {
      state.seq = Math.max(state.seq || 0, r.seq);
      state.count += 1;
      const row = document.createElement("tr");
      row.append(text("td", r.seq), text("td", r.device_id), text("td", r.metric),
        text("td", `${r.value} ${r.unit || ""}`), text("td", time(r.ts)));
      tbody.prepend(row);
      const device = state.devices.get(r.device_id) || { online: true, metrics: {} };
      device.metrics[r.metric] = { value: r.value, unit: r.unit, ts: r.ts };
      device.last_seen = Date.now();
      state.devices.set(r.device_id, device);
    }
    while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(-1);
    $("head").textContent = state.seq;
    $("count").textContent = state.count;
    renderDevices();
  });

  socket.on("presence", (p) => {
    const device = state.devices.get(p.device_id) || { metrics: {} };
    device.online = p.online;
    device.last_seen = p.last_seen;
    state.devices.set(p.device_id, device);
    renderDevices();
  });

  async function loadDevices() {
    const answer = await fetch("/api/devices").then((r) => r.json());
    for (const d of answer.devices) {
      state.devices.set(d.device_id, { online: d.online, last_seen: d.last_seen, metrics: d.metrics });
    }
    renderDevices();
  }

  let pending = false;
  function renderDevices() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      const tbody = $("devices").tBodies[0];
      const rows = [];
      for (const [id, d] of [...state.devices.entries()].sort(([a], [b]) => a.localeCompare(b))) {
        const row = document.createElement("tr");
        row.dataset.device = id;
        const values = Object.entries(d.metrics || {})
          .map(([m, v]) => `${m} ${Number(v.value).toPrecision(4)} ${v.unit || ""}`).join(" · ");
        row.append(text("td", id), text("td", d.online ? "online" : "offline", d.online ? "online" : "offline"),
          text("td", time(d.last_seen)), text("td", values));
        rows.push(row);
      }
      tbody.replaceChildren(...rows);
    });
  }
})();
