// The `/dashboard` Socket.IO connection: presents the cursor on every
// (re)connect, subscribes to everything, and hands events to the store.

import { io } from "socket.io-client";

/** `?transport=polling` (or websocket) forces one; by default start on
 * polling and upgrade, which a polling-only hub refuses (and that is fine). */
export function transportsFrom(search) {
  const forced = new URLSearchParams(search).get("transport");
  if (forced === "polling" || forced === "websocket") return [forced];
  return ["polling", "websocket"];
}

export class Connection {
  constructor(store, { transports, token, onConnect, onGap }) {
    this.store = store;
    this.token = token || "";
    this.handlers = { onConnect, onGap };
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
      socket.emit("subscribe", { devices: ["*"] }, (ack) => {
        if (!ack || typeof ack.epoch !== "string") {
          // Connected but given nothing: say so in the bar, not only in state.
          store.setConnection({
            state: "refused",
            error: (ack && ack.error) || "subscribe got no answer",
          });
          return;
        }
        store.subscribed(ack);
      });
      if (this.handlers.onConnect) this.handlers.onConnect();
    });

    socket.on("disconnect", (reason) => {
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
    socket.on("presence", (change) => store.presence(change));
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
