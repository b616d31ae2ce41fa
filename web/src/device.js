// The open device: a chart per metric over the chosen range (history from
// the readings API, extended by live readings), its latest values and its
// attributes. Only this device's charts ever redraw, at most once a frame.

import { MetricChart } from "./charts.js";
import { byId, formatAgo, formatReading, formatTime, h, setText } from "./format.js";
import { loadSeries, newSeries, RANGES, rangeOf } from "./history.js";
import { statusOf } from "./store.js";

const RETRY_MS = 2000;
const PENDING_LIVE_MAX = 20_000;

export class DeviceView {
  constructor(store, { onClose, onRange }) {
    this.store = store;
    this.onRange = onRange;
    this.deviceId = null;
    this.range = RANGES[0];
    this.metrics = new Map(); // name -> {chart, series, loading, pendingLive, dirty, token, unit}
    this.lastScroll = 0;
    this.attributesShown = null;
    this.latestRows = new Map();
    this.el = {
      empty: byId("detail-empty"),
      body: byId("detail-body"),
      title: byId("detail-title"),
      status: byId("detail-status"),
      group: byId("detail-group"),
      seen: byId("detail-seen"),
      ranges: byId("ranges"),
      rangeNote: byId("range-note"),
      charts: byId("charts"),
      chartsEmpty: byId("charts-empty"),
      latest: byId("latest-rows"),
      attributes: byId("attribute-rows"),
      attributesEmpty: byId("attributes-empty"),
    };
    byId("detail-back").addEventListener("click", onClose);
    this.rangeButtons = new Map();
    for (const range of RANGES) {
      const button = h("button", { text: range.label, dataset: { range: range.id } });
      button.type = "button";
      button.addEventListener("click", () => this.onRange(range.id));
      this.rangeButtons.set(range.id, button);
      this.el.ranges.append(button);
    }
    this.sizes = new ResizeObserver((entries) => {
      for (const entry of entries) entry.target._chart?.resize(Math.floor(entry.contentRect.width));
    });
    store.sinks.push((readings) => this.take(readings));
    // Charts take their colours from CSS when built: rebuild on a theme change.
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => this.remakeAll());
  }

  get isOpen() {
    return this.deviceId !== null;
  }

  open(deviceId, rangeId) {
    const range = rangeOf(rangeId);
    if (deviceId === this.deviceId && range === this.range) return;
    this.clear();
    this.deviceId = deviceId;
    this.range = range;
    this.el.empty.hidden = true;
    this.el.body.hidden = false;
    setText(this.el.title, deviceId);
    for (const [id, button] of this.rangeButtons) {
      button.setAttribute("aria-pressed", String(id === range.id));
    }
    setText(
      this.el.rangeNote,
      range.bucket ? `${range.bucket} buckets: min–max band, mean line` : "raw readings, live",
    );
    const device = this.store.devices.get(deviceId);
    const names = device ? [...device.metrics.keys()].sort() : [];
    for (const name of names) this.addMetric(name, device.metrics.get(name).unit);
    this.renderFacts(Date.now());
  }

  close() {
    this.clear();
    this.deviceId = null;
    this.el.body.hidden = true;
    this.el.empty.hidden = false;
  }

  clear() {
    for (const m of this.metrics.values()) {
      m.token += 1; // a load still in flight is for nothing now
      m.controller?.abort();
      this.sizes.unobserve(m.chart.canvasBox);
      m.chart.destroy();
    }
    this.metrics.clear();
    this.latestRows.clear();
    this.el.latest.replaceChildren();
    this.el.attributes.replaceChildren();
    this.attributesShown = null;
  }

  /** Reload history for the open charts (after a gap), keeping what they show meanwhile. */
  refill() {
    for (const [name, m] of this.metrics) this.load(name, m);
  }

  /** The hub's store was recreated: what the charts hold is of another lifetime. */
  reset() {
    if (this.deviceId === null) return;
    const [id, range] = [this.deviceId, this.range.id];
    this.deviceId = null;
    this.open(id, range);
  }

  /** New chart elements for the same series (a theme change, a unit learned). */
  remake(name, m) {
    const old = m.chart;
    m.chart = this.chart(name, m.unit, [...this.metrics.keys()].indexOf(name));
    old.root.replaceWith(m.chart.root);
    this.sizes.unobserve(old.canvasBox);
    old.destroy();
    m.dirty = true;
  }

  remakeAll() {
    for (const [name, m] of this.metrics) this.remake(name, m);
  }

  chart(name, unit, index) {
    const chart = new MetricChart({
      metric: name,
      unit,
      bucketed: Boolean(this.range.bucket),
      windowMs: this.range.windowMs,
      index,
      width: this.el.charts.firstElementChild?.clientWidth || this.el.charts.clientWidth,
    });
    chart.canvasBox._chart = chart;
    this.sizes.observe(chart.canvasBox);
    return chart;
  }

  addMetric(name, unit) {
    const chart = this.chart(name, unit, this.metrics.size);
    this.el.charts.append(chart.root);
    const m = {
      chart,
      unit,
      series: newSeries(this.range),
      loading: false,
      pendingLive: [],
      dirty: true,
      token: 0,
      controller: null,
    };
    this.metrics.set(name, m);
    this.load(name, m);
    return m;
  }

  async load(name, m) {
    const token = ++m.token;
    m.controller?.abort();
    const controller = new AbortController();
    m.controller = controller;
    m.loading = true;
    m.chart.setInfo("loading…");
    const deviceId = this.deviceId;
    const knownSeq = this.store.cursor.seq ?? -1;
    try {
      const { series, unit } = await loadSeries(deviceId, name, this.range, {
        now: Date.now(),
        knownSeq,
        signal: controller.signal,
      });
      if (token !== m.token) return;
      for (const r of m.pendingLive) series.add(r);
      m.pendingLive = [];
      m.series = series;
      m.loading = false;
      m.dirty = true;
      m.chart.setInfo("");
      if (unit !== undefined && unit !== m.unit) {
        m.unit = unit; // the axis names the unit
        this.remake(name, m);
      }
    } catch (error) {
      if (token !== m.token || controller.signal.aborted) return;
      m.chart.setInfo(`history unavailable (${error.message}); retrying`);
      setTimeout(() => {
        if (token === m.token) this.load(name, m);
      }, RETRY_MS);
    }
  }

  /** Readings applied this frame (all devices): keep the open device's. */
  take(readings) {
    const id = this.deviceId;
    if (id === null) return;
    for (const r of readings) {
      if (r.device_id !== id) continue;
      const m = this.metrics.get(r.metric) || this.addMetric(r.metric, r.unit);
      if (m.loading) {
        m.pendingLive.push(r);
        if (m.pendingLive.length > PENDING_LIVE_MAX) m.pendingLive.splice(0, 1000);
      } else if (m.series.add(r)) {
        m.dirty = true;
      }
    }
  }

  /** Charts: redraw those with new points; all of them once a second to scroll. */
  render(now) {
    if (this.deviceId === null) return;
    const scroll = now - this.lastScroll >= 1000;
    if (scroll) this.lastScroll = now;
    for (const m of this.metrics.values()) {
      if (m.dirty || scroll) {
        m.series.trim(now);
        m.chart.draw(m.series, now);
        m.dirty = false;
      }
    }
  }

  /** Header, latest values and attributes: a few times a second. */
  renderFacts(now) {
    if (this.deviceId === null) return;
    const device = this.store.devices.get(this.deviceId);
    this.el.chartsEmpty.hidden = this.metrics.size > 0;
    if (!device) {
      setText(this.el.status, "unknown");
      return;
    }
    // Metrics the page learnt of since (from /api/devices, say) get their charts.
    for (const [name, metric] of device.metrics) {
      if (!this.metrics.has(name)) this.addMetric(name, metric.unit);
    }
    this.el.chartsEmpty.hidden = this.metrics.size > 0;
    const status = statusOf(device, now, this.store.staleAfterMs);
    setText(this.el.status, status);
    this.el.status.dataset.status = status;
    setText(this.el.group, device.group ? `group ${device.group}` : "");
    setText(this.el.seen, `last seen ${formatAgo(device.lastSeen, now)}`);

    for (const [name, metric] of device.metrics) {
      let row = this.latestRows.get(name);
      if (!row) {
        row = {
          tr: h("tr"),
          name: h("th", { text: name }),
          value: h("td", { className: "num nowrap" }),
          time: h("td", { className: "muted" }),
        };
        row.name.scope = "row";
        row.tr.append(row.name, row.value, row.time);
        this.latestRows.set(name, row);
        const rows = [...this.latestRows.entries()].sort(([a], [b]) => a.localeCompare(b));
        this.el.latest.replaceChildren(...rows.map(([, r]) => r.tr));
      }
      setText(row.value, formatReading(metric.value, metric.unit));
      setText(row.time, formatTime(metric.ts, now));
    }

    if (this.attributesShown !== device.attributes) {
      this.attributesShown = device.attributes;
      const rows = [...device.attributes.entries()]
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([name, a]) => {
          const th = h("th", { text: name });
          th.scope = "row";
          return h("tr", {}, th, h("td", { className: "attr-value", text: a.value }),
            h("td", { className: "muted", text: formatTime(a.ts, now) }));
        });
      this.el.attributes.replaceChildren(...rows);
      this.el.attributesEmpty.hidden = rows.length > 0;
    }
  }

  /** Plain data for `window.__hub.state()`. */
  snapshot() {
    const series = {};
    for (const [name, m] of this.metrics) {
      series[name] = {
        unit: m.unit,
        loading: m.loading,
        points: m.series.length,
        drawn: m.chart.points,
        ts: [...m.series.ts],
        seqs: m.series.seq ? [...m.series.seq] : null,
        values: m.series.value ? [...m.series.value] : [...m.series.mean],
        counts: m.series.count ? [...m.series.count] : null, // buckets only
      };
    }
    return { device: this.deviceId, range: this.range.id, series };
  }
}
