// The device list: id, group, status, last seen, latest values; filtered by
// group and a search box; rows open with a click, Enter or Space. Rows are
// built once per device and afterwards only their changed text is touched.

import { byId, formatAgo, formatReading, h, setText } from "./format.js";
import { statusOf } from "./store.js";

export class DeviceList {
  constructor(store, { onOpen }) {
    this.store = store;
    this.onOpen = onOpen;
    this.rows = new Map(); // id -> row elements
    this.shown = []; // ids in the order shown
    this.shownKey = "";
    this.version = -1;
    this.filtersDirty = true;
    this.groupsKey = null;
    this.selected = null;
    this.el = {
      table: byId("devices"),
      rows: byId("device-rows"),
      empty: byId("list-empty"),
      count: byId("device-count"),
      group: byId("group-filter"),
      search: byId("search"),
    };
    const refilter = () => {
      this.filtersDirty = true;
      store.wake();
    };
    this.el.group.addEventListener("change", refilter);
    this.el.search.addEventListener("input", refilter);
    this.el.rows.addEventListener("click", (event) => {
      const tr = event.target.closest("tr[data-device]");
      if (tr) this.onOpen(tr.dataset.device);
    });
    this.el.rows.addEventListener("keydown", (event) => this.key(event));
    // Only rows on screen are written to; the others catch up when scrolled to.
    this.visible = new Set();
    this.visibility = new IntersectionObserver(
      (entries) => {
        for (const entry of entries) {
          const id = entry.target.dataset.device;
          if (entry.isIntersecting) this.visible.add(id);
          else this.visible.delete(id);
        }
        store.wake();
      },
      { rootMargin: "200px 0px" },
    );
  }

  key(event) {
    const tr = event.target.closest("tr[data-device]");
    if (!tr) return;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      this.onOpen(tr.dataset.device);
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const next = event.key === "ArrowDown" ? tr.nextElementSibling : tr.previousElementSibling;
      if (next) next.focus();
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

  row(device) {
    let row = this.rows.get(device.id);
    if (row) return row;
    const tr = h("tr", { dataset: { device: device.id } });
    tr.tabIndex = 0;
    row = {
      tr,
      id: h("td", { className: "device-id", text: device.id }),
      group: h("td", { className: "col-group muted" }),
      badge: h("span", { className: "badge" }),
      seen: h("span", { className: "seen muted" }),
      values: h("td", { className: "col-values" }),
      chips: new Map(), // metric -> value node
    };
    const status = h("td", { className: "col-status" }, row.badge, row.seen);
    tr.append(row.id, row.group, status, row.values);
    tr.setAttribute("role", "row");
    for (const cell of [row.id, row.group, status, row.values]) {
      cell.setAttribute("role", "cell");
    }
    if (device.id === this.selected) tr.setAttribute("aria-current", "true");
    this.rows.set(device.id, row);
    this.visibility.observe(tr);
    return row;
  }

  /** Which devices show, in which order: on new devices or new filters only. */
  layout() {
    const store = this.store;
    const groups = store.groups();
    const groupsKey = groups.join("\n");
    if (groupsKey !== this.groupsKey) {
      this.groupsKey = groupsKey;
      const current = this.el.group.value;
      const options = [h("option", { text: "All groups" })];
      options[0].value = "";
      for (const group of groups) {
        const option = h("option", { text: group });
        option.value = group;
        options.push(option);
      }
      this.el.group.replaceChildren(...options);
      this.el.group.value = groups.includes(current) ? current : "";
      // No [[devices]] groups in the hub's config: no empty column, no filter.
      this.el.group.hidden = groups.length === 0;
      this.el.table.classList.toggle("no-groups", groups.length === 0);
    }
    const group = this.el.group.value;
    const needle = this.el.search.value.trim().toLowerCase();
    const ids = [];
    for (const device of store.devices.values()) {
      if (group && device.group !== group) continue;
      if (needle && !matches(device, needle)) continue;
      ids.push(device.id);
    }
    ids.sort();
    const key = ids.join("\n");
    if (key !== this.shownKey) {
      this.shownKey = key;
      this.shown = ids;
      this.el.rows.replaceChildren(...ids.map((id) => this.row(store.devices.get(id)).tr));
      for (const [id, row] of this.rows) {
        if (store.devices.has(id)) continue;
        this.visibility.unobserve(row.tr);
        this.visible.delete(id);
        this.rows.delete(id);
      }
    }
    const total = store.devices.size;
    setText(this.el.count, ids.length === total ? `${total}` : `${ids.length} of ${total}`);
    this.el.empty.hidden = total > 0;
  }

  render(now) {
    const store = this.store;
    if (store.version !== this.version || this.filtersDirty) {
      this.version = store.version;
      this.filtersDirty = false;
      this.layout();
    }
    for (const id of this.shown) {
      if (!this.visible.has(id)) continue;
      const device = store.devices.get(id);
      const row = this.row(device);
      const status = statusOf(device, now, store.staleAfterMs);
      if (row.badge.dataset.status !== status) {
        row.badge.dataset.status = status;
        setText(row.badge, status);
      }
      setText(row.seen, formatAgo(device.lastSeen, now));
      if (!device.dirty) continue;
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
  }
}

function matches(device, needle) {
  if (device.id.toLowerCase().includes(needle)) return true;
  if (device.group && device.group.toLowerCase().includes(needle)) return true;
  for (const name of device.metrics.keys()) if (name.toLowerCase().includes(needle)) return true;
  return false;
}
