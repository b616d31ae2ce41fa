// uPlot charts, one per metric: a line of raw readings, or for bucketed
// history a min/max band with the mean as its line. uPlot draws on a canvas
// and sets its legend with textContent, so metric names and units stay text.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { formatValue, h, unitLabel } from "./format.js";

const PALETTE = ["#2f7de1", "#13a37f", "#d9822b", "#9b5de5", "#d94a6a", "#2aa3b8"];
const HEIGHT = 190;

function theme() {
  const css = getComputedStyle(document.documentElement);
  const get = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  return {
    text: get("--chart-text", "#5b6472"),
    grid: get("--chart-grid", "rgba(128,128,128,0.18)"),
    font: `11px ${get("--font", "system-ui, sans-serif")}`,
  };
}

function withAlpha(hex, alpha) {
  const n = Number.parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

const legendValue = (_u, v) => (v === null || v === undefined ? "–" : formatValue(v));

const SECONDS = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
});
const MINUTES = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit", minute: "2-digit", hourCycle: "h23",
});
const DAYS = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

/** Time ticks as short as their spacing allows: 12:04:30, 12:05, and the
 * date at midnight (or on every tick when they are days apart). */
function timeTicks(_u, splits, _axis, _space, increment) {
  if (increment < 60_000) return splits.map((ms) => SECONDS.format(ms));
  if (increment >= 86_400_000) return splits.map((ms) => DAYS.format(ms));
  return splits.map((ms) => {
    const t = new Date(ms);
    return t.getHours() === 0 && t.getMinutes() === 0 ? DAYS.format(ms) : MINUTES.format(ms);
  });
}

function legendTime(_u, ms) {
  return ms === null || ms === undefined ? "–" : SECONDS.format(ms);
}

export class MetricChart {
  /**
   * The chart's element is `root`, for the caller to place.
   * @param {{metric: string, unit: string|null, bucketed: boolean, windowMs: number,
   *          index: number, width: number}} spec
   */
  constructor({ metric, unit, bucketed, windowMs, index, width }) {
    this.metric = metric;
    this.windowMs = windowMs;
    this.now = Date.now();
    this.points = 0;
    const color = PALETTE[index % PALETTE.length];
    const label = unitLabel(unit);
    this.caption = h("figcaption", {},
      h("span", { className: "chart-metric", text: metric }),
      h("span", { className: "chart-unit", text: label ? `in ${label}` : "" }),
      (this.info = h("span", { className: "chart-info" })));
    this.canvasBox = h("div", { className: "chart-canvas" });
    this.root = h("figure", { className: "chart", dataset: { metric } },
      this.caption, this.canvasBox);

    const t = theme();
    const axis = {
      stroke: t.text,
      font: t.font,
      grid: { stroke: t.grid, width: 1 },
      ticks: { stroke: t.grid, width: 1, size: 4 },
    };
    const named = label ? `${metric} (${label})` : metric;
    const series = bucketed
      ? [
          { value: legendTime },
          { label: "max", stroke: withAlpha(color, 0.45), width: 1, value: legendValue, points: { show: false } },
          { label: "min", stroke: withAlpha(color, 0.45), width: 1, value: legendValue, points: { show: false } },
          { label: `${named} mean`, stroke: color, width: 1.75, value: legendValue },
        ]
      : [{ value: legendTime }, { label: named, stroke: color, width: 1.5, value: legendValue }];
    const options = {
      width: Math.max(240, width || 600),
      height: HEIGHT,
      ms: 1, // timestamps are epoch milliseconds
      pxAlign: 0,
      scales: {
        // The window scrolls with the clock, whatever the data's extent.
        x: { time: true, range: () => [this.now - this.windowMs, this.now] },
      },
      series,
      bands: bucketed ? [{ series: [1, 2], fill: withAlpha(color, 0.16) }] : [],
      axes: [
        { ...axis, values: timeTicks, space: 50 },
        {
          ...axis,
          size: 58,
          label: label || undefined,
          labelFont: t.font,
          labelSize: label ? 16 : 0,
          values: (_u, splits) => splits.map(formatValue),
        },
      ],
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
    };
    this.plot = new uPlot(options, bucketed ? [[], [], [], []] : [[], []], this.canvasBox);
  }

  draw(series, now) {
    this.now = now;
    this.points = series.length;
    this.plot.setData(series.data());
  }

  setInfo(text) {
    this.info.textContent = text;
  }

  resize(width) {
    if (width > 0 && Math.abs(width - this.plot.width) > 1) {
      this.plot.setSize({ width, height: HEIGHT });
    }
  }

  destroy() {
    this.plot.destroy();
    this.root.remove();
  }
}
