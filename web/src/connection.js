// The `/dashboard` Socket.IO connection: presents the cursor on every
// (re)connect, subscribes to the devices the page shows (the list's rows
// and the open device, not the whole fleet), and hands events to the store.

import { io } from "socket.io-client";

// Subscription changes while the list scrolls wait for it to settle this long.
const SETTLE_MS = 150;
const MAX_SELECTORS = 1000; // the hub's limit per call

/** `?transport=polling` (or websocket) forces one; by default start on
 * polling and upgrade, which a polling-only hub refuses (and that is fine). */
export function transportsFrom(search) {
  const forced = new URLSearchParams(search).get("transport");
  if (forced === "polling" || forced === "websocket") return [forced];
  return ["polling", "websocket"];
}

export class Connection {
  constructor(store, { transports, token, onConnect, onGap, onAdded, onPresence }) {
    this.store = store;
    this.token = token || "";
    this.handlers = { onConnect, onGap, onAdded, onPresence };
    // Subscriptions. `wanted`: what the page shows; `subscribed`: what the
    // hub has confirmed on this connection; `carried`: what the cursor
    // covers, the subscription when the last connection ended (null at
    // first: everything the page loaded came after the cursor of /api/info).
    this.wanted = new Set();
    this.subscribed = new Set();
    this.carried = null;
    this.acked = false; // the hub answered a subscribe on this connection
    this.session = 0; // connections so far: an answer from an earlier one is ignored
    this.calling = false;
    this.settle = null;
    this.socket = io("/dashboard", {
      transports,
      // A callback, so that every automatic reconnect presents the latest cursor.
      auth: (cb) => cb(this.auth()),
      reconnectionDelay: 500,
      reconnectionDelayMax: 3000,
    });
    this.listen();
  }

  get manager() {
    return this.socket.io;
  }

  auth() {
    const { epoch, seq } = this.store.cursor;
    const auth = {};
    if (this.token) auth.token = this.token;
    if (epoch !== null && seq !== null) auth.cursor = { epoch, seq };
    return auth;
  }

  /** The devices to get readings and presence for; `now` skips the settling. */
  want(ids, now = false) {
    this.wanted = ids;
    clearTimeout(this.settle);
    if (now || this.subscribed.size === 0) this.sync();
    else this.settle = setTimeout(() => this.sync(), SETTLE_MS);
  }

  /** One `subscribe` or `unsubscribe` at a time, until the hub has `wanted`. */
  sync() {
    if (!this.socket.connected || this.calling) return;
    const add = [...this.wanted].filter((id) => !this.subscribed.has(id));
    const remove = [...this.subscribed].filter((id) => !this.wanted.has(id));
    if (add.length > 0) this.call("subscribe", add.slice(0, MAX_SELECTORS));
    else if (remove.length > 0) this.call("unsubscribe", remove.slice(0, MAX_SELECTORS));
  }

  call(event, ids) {
    const { socket, store } = this;
    const session = this.session;
    // The connection's first subscribe presents the cursor: the hub replays
    // what the devices the cursor covers missed.
    const before = this.acked ? this.subscribed : this.carried;
    this.calling = true;
    socket.emit(event, { devices: ids }, (ack) => {
      if (session !== this.session) return;
      this.calling = false;
      if (!ack || typeof ack.epoch !== "string") {
        // Connected but given nothing: say so in the bar, not only in state.
        store.setConnection({
          state: "refused",
          error: (ack && ack.error) || `${event} got no answer`,
        });
        return;
      }
      this.acked = true;
      this.subscribed = new Set(ack.devices);
      const reset = store.subscribed(ack);
      // Devices whose readings come from now on only: what the page holds of
      // them may lack readings from before HEAD, so it is fetched again.
      const added = before === null ? [] : [...this.subscribed].filter((id) => !before.has(id));
      if (!reset && added.length > 0) this.handlers.onAdded(added);
      this.sync();
    });
  }

  /** A new dashboard token: reconnect with it. */
  useToken(token) {
    this.token = token;
    this.socket.disconnect();
    this.store.setConnection({ state: "connecting", error: null });
    this.socket.connect();
  }

  listen() {
    const { socket, store } = this;
    const showTransport = () => {
      const engine = socket.io.engine;
      store.setConnection({ transport: engine && engine.transport ? engine.transport.name : null });
    };
    // A new Engine.IO session on every reconnect: follow its upgrades.
    socket.io.on("open", () => {
      const engine = socket.io.engine;
      const canUpgrade = engine.transport.name === "polling" && engine.transports.includes("websocket");
      store.setConnection({ upgrade: canUpgrade ? "trying" : "none" });
      showTransport();
      engine.on("upgrade", () => {
        store.setConnection({ upgrade: "done" });
        showTransport();
      });
      engine.on("upgradeError", () => store.setConnection({ upgrade: "refused" }));
    });
    socket.io.on("reconnect_attempt", (attempt) => store.setConnection({ attempt }));

    socket.on("connect", () => {
      showTransport();
      store.setConnection({ state: "connected", attempt: 0, error: null });
      this.session += 1;
      this.calling = false;
      this.acked = false;
      this.sync();
      if (this.handlers.onConnect) this.handlers.onConnect();
    });

    socket.on("disconnect", (reason) => {
      // The hub forgets the subscription; the cursor covers what it held.
      if (this.acked) this.carried = this.subscribed;
      this.subscribed = new Set();
      this.acked = false;
      this.session += 1;
      const state = socket.active ? "reconnecting" : "disconnected";
      store.setConnection({ state, replay: null, error: reason });
    });

    socket.on("connect_error", (error) => {
      // Refused by the hub (a bad token): no automatic retry.
      if (!socket.active) {
        store.setConnection({ state: "refused", error: error.message });
      } else {
        store.setConnection({ state: "reconnecting", error: error.message });
      }
    });

    socket.on("readings", (frame) => store.receive(frame));
    socket.on("presence", (change) => {
      store.presence(change);
      this.handlers.onPresence();
    });
    socket.on("replay", (event) => {
      if (event.state === "start") store.replayStarted(event);
      else store.replayEnded(event);
    });
    socket.on("gap", (event) => {
      store.gap(event);
      if (this.handlers.onGap) this.handlers.onGap(event);
    });
  }
}
