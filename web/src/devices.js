// The device list: id, group, status, last seen, latest values, for the
// devices matching the search box, the group and the status filter, which
// the hub applies (pages.js). The list is virtual (virtual_list.js): rows
// exist for the devices on screen only, and afterwards only their changed
// text is touched. Rows open with a click, Enter or Space.

import { byId, formatAgo, formatCount, formatReading, h, setText } from "./format.js";
import { DevicePages, PAGE } from "./pages.js";
import { statusOf } from "./store.js";
import { VirtualList } from "./virtual_list.js";

const SEARCH_DELAY_MS = 150;
const MAX_QUERY = 100; // the hub's limit on q
const STATUSES = ["online", "stale", "offline"];
const EMPTY = "No devices yet. They appear as soon as one sends telemetry.";

export class DeviceList {
  constructor(store, { onOpen, onRows, pinned }) {
    this.store = store;
    this.onOpen = onOpen;
    this.onRows = onRows; // told the ids of the rows placed, when they change
    this.pinned = pinned; // ids the store must keep whatever the list shows
    this.rows = new Map(); // id -> row elements, for the rows placed
    this.holders = new Map(); // index -> placeholder row, for ids not fetched yet
    this.rowIds = "";
    this.selected = null;
    this.counts = null; // GET /api/devices/counts
    this.groupsKey = null;
    this.pages = null; // the search shown
    this.pending = null; // a new search, shown once its first page comes
    this.moved = true; // scrolled, resized or new rows: place the rows again
    this.el = {
      table: byId("devices"),
      rows: byId("device-rows"),
      empty: byId("list-empty"),
      count: byId("device-count"),
      group: byId("group-filter"),
      status: byId("status-filter"),
      search: byId("search"),
    };
    this.view = new VirtualList({
      scroller: byId("device-scroll"),
      body: this.el.rows,
      onMove: () => this.touch(),
    });
    let typing = null;
    this.el.search.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => this.search(), SEARCH_DELAY_MS);
    });
    this.el.group.addEventListener("change", () => this.search());
    this.el.status.addEventListener("change", () => this.search());
    this.el.rows.addEventListener("click", (event) => {
      const tr = event.target.closest("tr[data-device]");
      if (tr) this.onOpen(tr.dataset.device);
    });
    this.el.rows.addEventListener("keydown", (event) => this.key(event));
    this.search();
  }

  touch() {
    this.moved = true;
    this.store.wake();
  }

  query() {
    return {
      q: this.el.search.value.trim().slice(0, MAX_QUERY),
      group: this.el.group.value,
      status: this.el.status.value,
    };
  }

  /** Ask the hub for the current filters; the rows shown stay until it answers. */
  search() {
    const query = this.query();
    const shown = this.pending || this.pages;
    if (shown && JSON.stringify(shown.query) === JSON.stringify(query) && !shown.closed) return;
    this.pending?.close();
    this.pending = new DevicePages(this.store, query, () => this.touch());
    this.pending.want(0, PAGE);
    this.el.table.setAttribute("aria-busy", "true");
  }

  /** Everything again from the hub (its store was recreated). */
  reload() {
    this.pages?.close();
    this.pending?.close();
    this.pending = null;
    this.search();
  }

  /** Describe the rows on screen again (new counts, a subscription, a gap). */
  refresh() {
    this.pages?.refresh();
    this.pending?.refresh(); // (a first page refused, say, until a token is given)
  }

  key(event) {
    const tr = event.target.closest("tr[data-index]");
    if (!tr) return;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      if (tr.dataset.device) this.onOpen(tr.dataset.device);
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      // The overscan keeps neighbours placed; focus scrolls them into view,
      // and the rows are placed again at once (keys may come faster than frames).
      const next = event.key === "ArrowDown" ? tr.nextElementSibling : tr.previousElementSibling;
      if (next) {
        next.focus();
        this.place(Date.now());
      }
    }
  }

  select(id) {
    if (this.selected === id) return;
    const before = this.selected && this.rows.get(this.selected);
    if (before) before.tr.removeAttribute("aria-current");
    this.selected = id;
    const now = id && this.rows.get(id);
    if (now) now.tr.setAttribute("aria-current", "true");
  }

  row(id) {
    let row = this.rows.get(id);
    if (row) return row;
    const tr = h("tr", { dataset: { device: id } });
    tr.tabIndex = 0;
    row = {
      tr,
      id,
      index: -1,
      device: null, // the store's device last shown
      group: h("td", { className: "col-group muted" }),
      badge: h("span", { className: "badge" }),
      seen: h("span", { className: "seen muted" }),
      values: h("td", { className: "col-values" }),
      chips: new Map(), // metric -> value node
    };
    const cells = [
      h("td", { className: "device-id", text: id, title: id }),
      row.group,
      h("td", { className: "col-status" }, row.badge, row.seen),
      row.values,
    ];
    tr.append(...cells);
    tr.setAttribute("role", "row");
    for (const cell of cells) cell.setAttribute("role", "cell");
    if (id === this.selected) tr.setAttribute("aria-current", "true");
    this.rows.set(id, row);
    return row;
  }

  /** A row whose device is not known yet (the list walks down to it). */
  holder(index) {
    let row = this.holders.get(index);
    if (row) return row;
    const tr = h("tr", { className: "placeholder" }, h("td", { className: "muted", text: "loading…" }));
    tr.tabIndex = 0;
    tr.setAttribute("role", "row");
    tr.firstChild.setAttribute("role", "cell");
    row = { tr, index: -1 };
    this.holders.set(index, row);
    return row;
  }

  /** The rows on screen, for the current scroll position and pages. */
  place(now) {
    const pages = this.pages;
    this.view.count = pages.count;
    const range = this.view.range();
    if (range === null) return; // hidden (a phone showing the device): leave as is
    const { first, last } = range;
    pages.want(first, last);
    const placed = [];
    const rows = new Set();
    const holders = new Set();
    for (let i = first; i < last; i++) {
      const id = pages.ids[i];
      const row = id === undefined ? this.holder(i) : this.row(id);
      (id === undefined ? holders : rows).add(row);
      if (row.index !== i) {
        row.index = i;
        row.tr.dataset.index = String(i);
        row.tr.setAttribute("aria-rowindex", String(i + 2)); // the header is row 1
      }
      if (row.id !== undefined && row.device !== this.store.devices.get(row.id)) this.fill(row, now);
      placed.push(row.tr);
    }
    for (const [id, row] of this.rows) if (!rows.has(row)) this.rows.delete(id);
    for (const [index, row] of this.holders) if (!holders.has(row)) this.holders.delete(index);
    this.view.place(first, placed, pages.count);
    this.el.table.setAttribute("aria-rowcount", String(pages.count + 1));
    if (this.view.measure()) this.touch(); // the real row height: place again
    const ids = [...this.rows.keys()];
    const key = ids.join("\n");
    if (key !== this.rowIds) {
      this.rowIds = key;
      this.onRows(ids);
    }
    // The devices of the pages either side stay: scrolling back needs no fetch.
    this.store.trim(() => {
      const near = pages.ids.slice(Math.max(0, first - 2 * PAGE), last + 2 * PAGE);
      return new Set([...near, ...this.pinned()]);
    });
  }

  /** One row's text from the store: status and time always, the rest when changed. */
  fill(row, now) {
    const device = this.store.devices.get(row.id);
    if (!device) {
      row.badge.dataset.status = "";
      setText(row.badge, "…");
      return;
    }
    const status = statusOf(device, now, this.store.staleAfterMs);
    if (row.badge.dataset.status !== status) {
      row.badge.dataset.status = status;
      setText(row.badge, status);
    }
    setText(row.seen, formatAgo(device.lastSeen, now));
    if (row.device !== device) {
      // Another copy of the device (forgotten and fetched again): start over.
      row.device = device;
      row.chips.clear();
      row.values.replaceChildren();
    } else if (!device.dirty) {
      return;
    }
    device.dirty = false;
    setText(row.group, device.group || "");
    for (const [name, metric] of device.metrics) {
      let value = row.chips.get(name);
      if (!value) {
        value = h("span", { className: "chip-value" });
        row.chips.set(name, value);
        row.values.append(h("span", { className: "chip" }, h("span", { className: "chip-name", text: name }), value));
      }
      setText(value, formatReading(metric.value, metric.unit));
    }
  }

  /** Counts by status and group: the filters' options say how many. */
  setCounts(counts) {
    this.counts = counts;
    const statusOptions = this.el.status.options;
    setText(statusOptions[0], `All statuses (${formatCount(counts.total)})`);
    for (const [k, status] of STATUSES.entries()) {
      setText(statusOptions[k + 1], `${status} (${formatCount(counts.status[status] ?? 0)})`);
    }
    const groups = Object.keys(counts.groups).sort();
    const groupsKey = groups.join("\n");
    if (groupsKey !== this.groupsKey) {
      this.groupsKey = groupsKey;
      const current = this.el.group.value;
      const options = [h("option", { text: "All groups" })];
      options[0].value = "";
      for (const group of groups) {
        const option = h("option");
        option.value = group;
        options.push(option);
      }
      this.el.group.replaceChildren(...options);
      // A group chosen keeps its place while the hub counts it.
      this.el.group.value = groups.includes(current) ? current : "";
      if (current && !groups.includes(current)) this.search();
      // No groups on this hub: no empty column, no filter.
      this.el.group.hidden = groups.length === 0;
      this.el.table.classList.toggle("no-groups", groups.length === 0);
    }
    for (const option of this.el.group.options) {
      if (option.value) setText(option, `${option.value} (${formatCount(counts.groups[option.value] ?? 0)})`);
    }
  }

  /** Plain data for `window.__hub.state()`. */
  snapshot() {
    const pages = this.pages;
    return {
      query: pages && { ...pages.query },
      total: pages && pages.total,
      count: pages ? pages.count : 0,
      known: pages ? pages.ids.length : 0,
      placed: [this.view.first, this.view.last],
      rows: [...this.rows.keys()],
      searching: this.pending !== null,
    };
  }

  render(now, full) {
    if (this.pending?.ready) {
      this.pages?.close();
      this.pages = this.pending;
      this.pending = null;
      this.el.table.removeAttribute("aria-busy");
      this.view.toTop();
      this.moved = true;
    }
    const pages = this.pages;
    if (!pages) return;
    if (this.moved) {
      this.moved = false;
      this.place(now);
    }
    if (!full) return;
    for (const row of this.rows.values()) this.fill(row, now);
    const { q, group, status } = pages.query;
    const all = this.counts ? this.counts.total : pages.total;
    const filtered = Boolean(q || group || status);
    setText(this.el.count, filtered ? `${formatCount(pages.total)} of ${formatCount(all)}` : formatCount(pages.total));
    this.el.empty.hidden = pages.count > 0;
    setText(this.el.empty, filtered ? "No device matches." : EMPTY);
  }
}
