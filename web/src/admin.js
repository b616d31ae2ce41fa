// The admin panel: with the admin token (kept in sessionStorage, so it goes
// with the tab), send a command to a device over `/admin` and show its reply,
// and list the payloads the hub rejected, with their reasons.

import { io } from "socket.io-client";
import { rejections } from "./api.js";
import { byId, formatAgo, formatTime, h, setText } from "./format.js";

const TOKEN_KEY = "telemetry-hub.admin-token";
const REJECTIONS_SHOWN = 50;

export class AdminPanel {
  constructor(store, { transports, openDevice }) {
    this.store = store;
    this.transports = transports;
    this.openDevice = openDevice;
    this.socket = null;
    this.token = sessionStorage.getItem(TOKEN_KEY) || "";
    this.deviceIdsKey = "";
    this.el = {
      panel: byId("admin"),
      summary: byId("admin-summary"),
      off: byId("admin-off"),
      body: byId("admin-body"),
      login: byId("admin-login"),
      tokenInput: byId("admin-token"),
      forget: byId("admin-forget"),
      state: byId("admin-state"),
      form: byId("command-form"),
      device: byId("command-device"),
      deviceIds: byId("device-ids"),
      name: byId("command-name"),
      args: byId("command-args"),
      timeout: byId("command-timeout"),
      send: byId("command-send"),
      commandState: byId("command-state"),
      reply: byId("command-reply"),
      refresh: byId("rejections-refresh"),
      counts: byId("rejection-counts"),
      rows: byId("rejection-rows"),
      empty: byId("rejections-empty"),
    };
    if (!store.info.admin) {
      this.el.off.hidden = false;
      this.el.body.hidden = true;
      setText(this.el.summary, "off on this hub");
      return;
    }
    this.el.login.addEventListener("submit", (event) => {
      event.preventDefault();
      this.unlock(this.el.tokenInput.value.trim());
    });
    this.el.forget.addEventListener("click", () => this.forget());
    this.el.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.el.refresh.addEventListener("click", () => this.loadRejections());
    this.el.panel.addEventListener("toggle", () => {
      if (this.el.panel.open && !this.el.device.value && this.openDevice()) {
        this.el.device.value = this.openDevice();
      }
    });
    this.locked(true);
    if (this.token) this.unlock(this.token);
  }

  locked(locked) {
    for (const node of this.el.form.elements) node.disabled = locked;
    this.el.refresh.disabled = locked;
    this.el.forget.hidden = locked && !this.token;
    setText(this.el.summary, locked ? "locked" : "unlocked");
  }

  unlock(token) {
    if (!token) return;
    this.token = token;
    setText(this.el.state, "connecting…");
    if (this.socket === null) {
      // Multiplexed over the dashboard's Engine.IO connection; the token is
      // read on every (re)connect.
      this.socket = io("/admin", {
        transports: this.transports,
        autoConnect: false,
        auth: (cb) => cb({ token: this.token }),
      });
      this.listen(this.socket);
    }
    this.socket.disconnect();
    this.socket.connect();
  }

  listen(socket) {
    socket.on("connect", () => {
      sessionStorage.setItem(TOKEN_KEY, this.token);
      this.el.tokenInput.value = "";
      setText(this.el.state, "admin connected");
      this.locked(false);
      this.loadRejections();
    });
    socket.on("connect_error", (error) => {
      setText(this.el.state, `refused: ${error.message}`);
      if (!socket.active) {
        // Refused by the hub: a wrong token, not a network problem.
        sessionStorage.removeItem(TOKEN_KEY);
        this.locked(true);
      }
    });
    socket.on("disconnect", () => {
      if (socket.active) setText(this.el.state, "admin disconnected: reconnecting");
    });
  }

  forget() {
    sessionStorage.removeItem(TOKEN_KEY);
    this.token = "";
    this.socket?.disconnect();
    setText(this.el.state, "");
    this.locked(true);
    this.el.forget.hidden = true;
  }

  send() {
    const deviceId = this.el.device.value.trim();
    const name = this.el.name.value.trim();
    let args;
    try {
      args = JSON.parse(this.el.args.value.trim() || "{}");
    } catch (error) {
      this.showReply("error", `arguments are not JSON: ${error.message}`);
      return;
    }
    if (args === null || typeof args !== "object" || Array.isArray(args)) {
      this.showReply("error", "arguments must be a JSON object");
      return;
    }
    if (!this.socket || !this.socket.connected) {
      this.showReply("error", "not connected to /admin");
      return;
    }
    const timeoutMs = Math.round(Number(this.el.timeout.value || 10) * 1000);
    const started = performance.now();
    setText(this.el.commandState, `sending ${name} to ${deviceId}…`);
    this.el.send.disabled = true;
    this.socket
      .timeout(timeoutMs + 5000)
      .emit("command", { device_id: deviceId, name, args, timeout_ms: timeoutMs }, (error, reply) => {
        this.el.send.disabled = false;
        const ms = Math.round(performance.now() - started);
        if (error) {
          this.showReply("error", `no answer from the hub within ${timeoutMs + 5000} ms`);
          return;
        }
        const ok = reply && reply.ok === true;
        setText(this.el.commandState, `${ok ? "ok" : "failed"} in ${ms} ms`);
        this.showReply(ok ? "ok" : "error", JSON.stringify(reply, null, 2));
      });
  }

  showReply(kind, text) {
    if (kind === "error") setText(this.el.commandState, "failed");
    this.el.reply.hidden = false;
    this.el.reply.dataset.kind = kind;
    this.el.reply.textContent = text;
  }

  async loadRejections() {
    if (!this.token) return;
    this.el.refresh.disabled = true;
    try {
      const answer = await rejections(this.token, REJECTIONS_SHOWN);
      const now = Date.now();
      const rows = answer.rejections.map((r) => {
        const detail = h("td", { className: "rejection-detail" },
          h("div", { text: r.detail || "" }),
          h("code", { className: "excerpt", text: r.excerpt || "" }));
        return h("tr", {},
          h("td", { className: "nowrap", text: formatTime(r.received_ms, now), title: formatAgo(r.received_ms, now) }),
          h("td", { text: r.device_id || "–" }),
          h("td", { text: r.source }),
          h("td", {}, h("span", { className: "reason", text: r.reason })),
          detail);
      });
      this.el.rows.replaceChildren(...rows);
      this.el.empty.hidden = rows.length > 0;
      const counts = Object.entries(answer.counts || {})
        .map(([reason, n]) => `${reason} ${n}`)
        .join(" · ");
      setText(this.el.counts, counts ? `by reason (kept): ${counts}` : "");
    } catch (error) {
      setText(this.el.counts, `could not load: ${error.message}`);
    } finally {
      this.el.refresh.disabled = false;
    }
  }

  /** Device ids for the command form's suggestions: when the set changes. */
  render() {
    if (!this.el.panel.open) return;
    const ids = [...this.store.devices.keys()].sort();
    const key = ids.join("\n");
    if (key === this.deviceIdsKey) return;
    this.deviceIdsKey = key;
    this.el.deviceIds.replaceChildren(...ids.map((id) => {
      const option = h("option");
      option.value = id;
      return option;
    }));
  }
}
