// Text for people, and the one way this page puts data into the DOM:
// textContent. Device-supplied strings (ids, metric names, attribute values,
// units, rejected payloads) never pass through innerHTML.

/** An element with text and classes; children are nodes or strings (as text). */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  if (props.className) node.className = props.className;
  if (props.text !== undefined && props.text !== null) node.textContent = String(props.text);
  if (props.title) node.title = String(props.title);
  if (props.dataset) Object.assign(node.dataset, props.dataset);
  for (const child of children) {
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/** Set a node's text only when it changed: no layout work for equal text. */
export function setText(node, value) {
  const text = value === undefined || value === null ? "" : String(value);
  if (node._text !== text) {
    node._text = text;
    node.textContent = text;
  }
}

export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing from index.html`);
  return node;
}

// SenML symbols people read differently; anything else is shown as sent.
const UNIT_LABELS = { Cel: "°C", degF: "°F", "/": "", count: "" };

export function unitLabel(unit) {
  if (unit === null || unit === undefined) return "";
  return Object.hasOwn(UNIT_LABELS, unit) ? UNIT_LABELS[unit] : String(unit);
}

const compact = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

export function formatValue(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const magnitude = Math.abs(value);
  if (magnitude >= 10000) return compact.format(value);
  if (magnitude >= 100) return value.toFixed(1);
  if (magnitude >= 1 || magnitude === 0) return String(Number(value.toFixed(2)));
  return String(Number(value.toPrecision(3)));
}

export function formatReading(value, unit) {
  const label = unitLabel(unit);
  return label ? `${formatValue(value)} ${label}` : formatValue(value);
}

/** "just now", "12 s ago", "5 min ago", "3 h ago", "2 d ago"; "never" for null. */
export function formatAgo(ms, now = Date.now()) {
  if (!ms) return "never";
  const seconds = Math.max(0, Math.round((now - ms) / 1000));
  if (seconds < 3) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return `${Math.floor(hours / 24)} d ago`;
}

const clock = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});
const dated = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});

export function formatTime(ms, now = Date.now()) {
  if (!ms) return "–";
  return now - ms < 20 * 3600 * 1000 ? clock.format(ms) : dated.format(ms);
}

export function formatCount(n) {
  return compact.format(n);
}
