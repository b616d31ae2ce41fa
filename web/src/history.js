// Time ranges and loading them from the readings API. Every range draws a
// few hundred points: raw readings for the live window, buckets (min/max
// band and mean line) for the longer ones.

import { readings } from "./api.js";
import { BucketSeries, RawSeries } from "./series.js";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

export const RANGES = [
  // 5 min of raw readings: 3,000 points at 10 Hz, the cap of a live chart.
  { id: "live", label: "Live 5 min", windowMs: 5 * MINUTE, maxPoints: 3000 },
  { id: "15m", label: "15 min", windowMs: 15 * MINUTE, bucket: "2s", bucketMs: 2000 }, // 450
  { id: "1h", label: "1 h", windowMs: HOUR, bucket: "10s", bucketMs: 10_000 }, // 360
  { id: "24h", label: "24 h", windowMs: 24 * HOUR, bucket: "3m", bucketMs: 3 * MINUTE }, // 480
  { id: "7d", label: "7 d", windowMs: 7 * 24 * HOUR, bucket: "30m", bucketMs: 30 * MINUTE }, // 336
];

export function rangeOf(id) {
  return RANGES.find((r) => r.id === id) || RANGES[0];
}

export function newSeries(range) {
  return range.bucket
    ? new BucketSeries({ windowMs: range.windowMs, bucketMs: range.bucketMs })
    : new RawSeries({ windowMs: range.windowMs, maxPoints: range.maxPoints });
}

/**
 * The stored history of one metric over `range`, ending now, as a series that
 * live readings can extend. Buckets carry no seqs: the hub says up to which
 * seq they count (`through`), and live readings up to it are skipped.
 * `knownSeq`, the page's cursor when it asked, stands in if it does not.
 */
export async function loadSeries(deviceId, metric, range, { now, knownSeq, signal }) {
  const series = newSeries(range);
  const from = now - range.windowMs;
  if (range.bucket) {
    const start = Math.floor(from / range.bucketMs) * range.bucketMs;
    const limit = Math.ceil(range.windowMs / range.bucketMs) + 2;
    const answer = await readings(deviceId, metric, {
      from: start,
      limit,
      bucket: range.bucket,
      signal,
    });
    // The buckets count every reading up to `through` (older hubs: the cursor).
    series.load(answer.buckets, answer.through ?? knownSeq);
    return { series, unit: answer.unit };
  }
  // The latest readings (not the first ones after `from`), then the window.
  const answer = await readings(deviceId, metric, { limit: range.maxPoints, signal });
  series.load(answer.readings.filter((r) => r.ts >= from));
  return { series, unit: answer.unit };
}
