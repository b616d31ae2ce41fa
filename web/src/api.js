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
export function devicePage({ limit, after, offset, q, group, status, signal }) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (after) query.set("after", after);
  if (offset) query.set("offset", String(offset));
  if (q) query.set("q", q);
  if (group) query.set("group", group);
  if (status) query.set("status", status);
  return getJSON(`/api/devices?${query}`, { signal });
}

/** `{total, status: {online, stale, offline}, groups: {name: n}}`. */
export function deviceCounts() {
  return getJSON("/api/devices/counts");
}

/** One device (`GET /api/devices/{id}`), or null if the hub has none by that id. */
export async function findDevice(id) {
  try {
    return await getJSON(`/api/devices/${encodeURIComponent(id)}`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  }
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
