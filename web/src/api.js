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

export async function listDevices() {
  return (await getJSON("/api/devices")).devices;
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
