// Client-side state: the cursor, the devices the page shows (the list's
// rows near the view and the open device, not the whole fleet) with their
// latest values, and the connection's state. Socket events only append to
// `pending` (O(1) per frame); `apply()` folds them into the devices once per
// animation frame.

const REPLAY_LOG_MAX = 200;
// A hidden tab gets no animation frames: past this many buffered readings the
// store folds them in at once rather than let the buffer grow.
const PENDING_MAX = 50_000;
// Past this many devices held, those the page no longer shows are forgotten.
const DEVICES_MAX = 2000;

export function statusOf(device, now, staleAfterMs) {
  if (!device.online) return "offline";
  if (!device.lastData || now - device.lastData > staleAfterMs) return "stale";
  return "online";
}

function newDevice(id) {
  return {
    id,
    group: null,
    online: false,
    lastSeen: null, // the hub's last_seen or the arrival of our latest reading (ms)
    lastData: null, // when its latest reading arrived (ms): what "stale" is about
    metrics: new Map(), // name -> {value, unit, ts, count, lastSeq}
    attributes: new Map(), // name -> {value, ts}
    fetched: 0, // the number of the HTTP fetch that described it last (0: none)
    dirty: true,
  };
}

export class Store {
  constructor(info) {
    this.info = info;
    this.staleAfterMs = info.stale_after_ms ?? 60_000;
    // The page loads its devices and history after /api/info, so it has every
    // reading up to that HEAD: its first connect asks for what came after
    // (a replay) rather than starting live from a later HEAD and missing them.
    this.cursor =
      typeof info.epoch === "string" && Number.isInteger(info.head)
        ? { epoch: info.epoch, seq: info.head }
        : { epoch: null, seq: null };
    this.head = info.head ?? null;
    this.devices = new Map();
    this.pending = [];
    this.pendingCount = 0;
    // upgrade: "none" (polling only, none tried), "trying", "done", or "refused"
    this.conn = {
      state: "connecting",
      transport: null,
      upgrade: null,
      attempt: 0,
      error: null,
      replay: null,
    };
    this.notice = null; // {text, until}
    this.replayLog = [];
    this.stats = { frames: 0, readings: 0, replayed: 0, applied: 0, gaps: 0, resets: 0 };
    this.wake = () => {}; // set by main: schedules an animation frame
    this.sinks = []; // functions given every applied batch (the open device's charts)
    this.onReset = () => {}; // set by main: the hub's store was recreated
  }

  // -- from the connection ------------------------------------------------

  /** A `readings` frame: keep the cursor exact now, fold the readings in later. */
  receive(frame) {
    const readings = frame && frame.readings;
    if (!Array.isArray(readings) || readings.length === 0) return;
    if (frame.epoch && frame.epoch !== this.cursor.epoch) this.adoptEpoch(frame.epoch, null);
    const last = readings[readings.length - 1].seq; // ascending within a frame
    if (this.cursor.seq === null || last > this.cursor.seq) this.cursor.seq = last;
    if (this.head === null || last > this.head) this.head = last;
    this.stats.frames += 1;
    this.stats.readings += readings.length;
    this.pending.push({ readings, replay: frame.replay === true, at: Date.now() });
    this.pendingCount += readings.length;
    if (frame.replay) {
      this.stats.replayed += readings.length;
      const replay = this.conn.replay;
      if (replay) {
        replay.got += readings.length;
        this.logReplay(`replaying ${Math.min(replay.got, replay.total)} of ${replay.total}`);
      }
    }
    if (this.pendingCount > PENDING_MAX) this.apply();
    this.wake();
  }

  /** The answer to `subscribe`. True when the store was recreated under us. */
  subscribed(ack) {
    let reset = false;
    if (ack.epoch !== this.cursor.epoch) reset = this.adoptEpoch(ack.epoch, ack.seq);
    else if (this.cursor.seq === null) this.cursor.seq = ack.seq;
    if (this.head === null || ack.seq > this.head) this.head = ack.seq;
    this.wake();
    return reset;
  }

  adoptEpoch(epoch, seq) {
    const reset = this.cursor.epoch !== null;
    this.cursor = { epoch, seq };
    if (reset) {
      // Seqs of the old store mean nothing in the new one.
      this.head = seq;
      this.stats.resets += 1;
      // What the page holds is of the old store: the list and the open
      // device load again from the new one (onReset).
      this.devices.clear();
      this.say("the hub's store was recreated: history reloaded");
      this.onReset();
    }
    return reset;
  }

  replayStarted(event) {
    this.conn.replay = { from: event.from, to: event.to, total: event.count, got: 0 };
    if (this.head === null || event.to > this.head) this.head = event.to;
    this.logReplay(`replaying 0 of ${event.count}`);
    this.wake();
  }

  replayEnded(event) {
    const replay = this.conn.replay;
    this.logReplay(`replay done: ${event.count} readings`);
    if (replay) this.say(`caught up: ${event.count} missed readings replayed`, 5000);
    this.conn.replay = null;
    this.wake();
  }

  gap(event) {
    this.stats.gaps += 1;
    // The hub will not send (from, to]: the cursor moves past it so that the
    // next reconnect does not ask again. An epoch gap is settled by the new
    // epoch's HEAD (from the subscribe answer).
    if (event.reason !== "epoch" && (this.cursor.seq === null || event.to > this.cursor.seq)) {
      this.cursor.seq = event.to;
    }
    this.say(`gap: seq ${event.from}–${event.to} not sent (${event.reason}); filled from history`);
    this.logReplay(`gap ${event.from}-${event.to} ${event.reason}`);
    this.wake();
  }

  presence(change) {
    const device = this.device(change.device_id);
    device.online = change.online === true;
    if (change.last_seen && (!device.lastSeen || change.last_seen > device.lastSeen)) {
      device.lastSeen = change.last_seen;
    }
    device.dirty = true;
    this.wake();
  }

  setConnection(patch) {
    Object.assign(this.conn, patch);
    this.wake();
  }

  say(text, ms = 8000) {
    this.notice = { text, until: Date.now() + ms };
    this.wake();
  }

  logReplay(text) {
    this.replayLog.push(text);
    if (this.replayLog.length > REPLAY_LOG_MAX) this.replayLog.splice(0, 50);
  }

  // -- from HTTP ------------------------------------------------------------

  /**
   * Devices from `/api/devices` (a page, or one device): group, presence,
   * attributes, and latest values we lack. `fetched` numbers the fetch.
   */
  loadDevices(list, fetched) {
    for (const d of list) {
      const device = this.device(d.device_id);
      device.group = d.group ?? null;
      device.fetched = Math.max(device.fetched, fetched);
      device.online = d.online === true;
      if (d.last_seen && (!device.lastSeen || d.last_seen > device.lastSeen)) {
        device.lastSeen = d.last_seen;
      }
      for (const [name, m] of Object.entries(d.metrics || {})) {
        const mine = device.metrics.get(name);
        if (!mine) {
          device.metrics.set(name, { value: m.value, unit: m.unit, ts: m.ts, count: 0, lastSeq: null });
        } else if (m.ts > mine.ts) {
          Object.assign(mine, { value: m.value, unit: m.unit, ts: m.ts });
        }
        if (m.ts && (!device.lastData || m.ts > device.lastData)) {
          device.lastData = Math.min(m.ts, Date.now());
        }
      }
      device.attributes = new Map(Object.entries(d.attributes || {}));
      device.dirty = true;
    }
    this.wake();
  }

  /** Once there are many, forget the devices not in `keep()` (a Set): the
   * list holds pages near its view only, so memory follows the view, not
   * the fleet. */
  trim(keep) {
    if (this.devices.size <= DEVICES_MAX) return;
    const kept = keep();
    for (const id of this.devices.keys()) if (!kept.has(id)) this.devices.delete(id);
  }

  // -- once per animation frame ---------------------------------------------

  /** Fold buffered readings into the devices and hand them to the sinks. */
  apply() {
    if (this.pendingCount === 0) return [];
    const batches = this.pending;
    this.pending = [];
    this.pendingCount = 0;
    const applied = [];
    for (const { readings, replay, at } of batches) {
      for (const r of readings) {
        const device = this.device(r.device_id);
        let metric = device.metrics.get(r.metric);
        if (!metric) {
          metric = { value: r.value, unit: r.unit, ts: r.ts, count: 0, lastSeq: null };
          device.metrics.set(r.metric, metric);
        } else if (r.ts >= metric.ts) {
          metric.value = r.value;
          metric.unit = r.unit;
          metric.ts = r.ts;
        }
        metric.count += 1;
        metric.lastSeq = r.seq;
        // A replayed reading is old news: it says when the device was heard then.
        const heard = replay ? Math.min(r.ts, at) : at;
        if (!device.lastData || heard > device.lastData) device.lastData = heard;
        if (!device.lastSeen || heard > device.lastSeen) device.lastSeen = heard;
        if (!replay) device.online = true;
        device.dirty = true;
        applied.push(r);
      }
    }
    this.stats.applied += applied.length;
    for (const sink of this.sinks) sink(applied);
    return applied;
  }

  device(id) {
    let device = this.devices.get(id);
    if (!device) {
      device = newDevice(id);
      this.devices.set(id, device);
    }
    return device;
  }

  /** A plain copy for `window.__hub.state()` (tests and the curious). */
  snapshot() {
    const devices = {};
    for (const [id, d] of this.devices) {
      const metrics = {};
      for (const [name, m] of d.metrics) metrics[name] = { ...m };
      devices[id] = {
        group: d.group,
        online: d.online,
        status: statusOf(d, Date.now(), this.staleAfterMs),
        lastSeen: d.lastSeen,
        metrics,
        attributes: Object.fromEntries([...d.attributes].map(([k, v]) => [k, v.value])),
      };
    }
    return {
      cursor: { ...this.cursor },
      head: this.head,
      connection: { ...this.conn, replay: this.conn.replay && { ...this.conn.replay } },
      notice: this.notice && this.notice.until > Date.now() ? this.notice.text : null,
      replayLog: [...this.replayLog],
      stats: { ...this.stats, pending: this.pendingCount },
      devices,
    };
  }
}
