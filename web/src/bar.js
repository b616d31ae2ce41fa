// The connection bar: which transport, what state (connected, reconnecting,
// replaying x of y, refused), the hub's head seq, and brief notices (a gap).

import { byId, formatCount, setText } from "./format.js";

export class ConnectionBar {
  constructor(store) {
    this.store = store;
    this.shownState = null;
    this.shown = []; // the state texts shown, newest last (for window.__hub.state())
    this.el = {
      dot: byId("conn-dot"),
      state: byId("conn-state"),
      transport: byId("conn-transport"),
      head: byId("conn-head"),
      notice: byId("conn-notice"),
    };
  }

  stateText() {
    const { state, replay, attempt, error } = this.store.conn;
    if (state === "connected" && replay) {
      return ["replaying", `replaying ${Math.min(replay.got, replay.total)} of ${replay.total}`];
    }
    if (state === "reconnecting") {
      return ["reconnecting", attempt > 1 ? `reconnecting (attempt ${attempt})` : "reconnecting"];
    }
    if (state === "refused") return ["refused", `refused: ${error || "not allowed"}`];
    return [state, state];
  }

  /** The state every frame (replay progress moves); the rest when `full`. */
  render(now, full) {
    const store = this.store;
    const [kind, text] = this.stateText();
    if (text !== this.shownState) {
      this.shownState = text;
      this.shown.push(text);
      if (this.shown.length > 300) this.shown.splice(0, 100);
      setText(this.el.state, text);
      this.el.dot.dataset.state = kind;
      this.el.state.dataset.state = kind;
    }
    if (!full) return;
    setText(this.el.transport, store.conn.transport || "–");
    setText(this.el.head, store.head === null ? "–" : formatCount(store.head));
    this.el.head.title = store.cursor.seq === null ? "" : `cursor seq ${store.cursor.seq}`;
    const notice = store.notice && store.notice.until > now ? store.notice.text : "";
    setText(this.el.notice, notice);
    this.el.notice.hidden = !notice;
  }
}
