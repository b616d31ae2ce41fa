// The hub's HTTP API, as the page uses it (docs/protocol.md, "HTTP").

export class ApiError extends Error {
  constructor(path, status, message) {
    super(`${path}: ${status} ${message}`);
    this.status = status;
  }
}

// The dashboard token, when the hub asks for one: sent with the device list
// and history reads, as the Socket.IO connection sends it.
let dashboardToken = "";

export function useDashboardToken(token) {
  dashboardToken = token || "";
}

async function getJSON(path, { token = dashboardToken, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { headers, signal, cache: "no-store" });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    throw new ApiError(path, response.status, (body && body.error) || response.statusText);
  }
  return body;
}

export function hubInfo() {
  return getJSON("/api/info");
}

/**
 * One page of the device list, in id order: `{devices, next, total}`. `after`
 * is the previous page's `next`; `q`, `group` and `status` filter on the hub.
 */
export function devicePage({ limit, after, q, group, status, signal }) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (after) query.set("after", after);
  if (q) query.set("q", q);
  if (group) query.set("group", group);
  if (status) query.set("status", status);
  return getJSON(`/api/devices?${query}`, { signal });
}

/** `{total, status: {online, stale, offline}, groups: {name: n}}`. */
export function deviceCounts() {
  return getJSON("/api/devices/counts");
}

/**
 * One device, or null if the hub has none by that id. There is no route for
 * one device, so this asks for the first device after an id just below it:
 * ids are at most 64 of [A-Za-z0-9_.-], all below "~", so nothing sorts
 * between the two. A hub whose ids sort otherwise (PostgreSQL with a
 * language collation) falls back to a search.
 */
export async function findDevice(id) {
  const last = id.charCodeAt(id.length - 1);
  const below = id.slice(0, -1) + String.fromCharCode(last - 1) + "~".repeat(64);
  const exact = (page) => page.devices.find((d) => d.device_id === id) || null;
  return exact(await devicePage({ limit: 1, after: below })) ?? exact(await devicePage({ limit: 1000, q: id }));
}

/**
 * One metric's stored readings: `{unit, readings}` raw, or `{unit, buckets}`
 * with `bucket` (a duration such as "10s"). Without `from`, the latest `limit`.
 */
export function readings(deviceId, metric, { from, to, limit, bucket, signal } = {}) {
  const query = new URLSearchParams({ metric });
  if (from !== undefined) query.set("from", String(Math.floor(from)));
  if (to !== undefined) query.set("to", String(Math.ceil(to)));
  if (limit !== undefined) query.set("limit", String(limit));
  if (bucket) query.set("bucket", bucket);
  return getJSON(`/api/devices/${encodeURIComponent(deviceId)}/readings?${query}`, { signal });
}

export function rejections(token, limit = 50) {
  return getJSON(`/api/rejections?limit=${limit}`, { token });
}
