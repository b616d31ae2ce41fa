// Bounded time series for one metric of the open device, in the column
// layout uPlot draws: raw points (ts, value, seq), or buckets aligned to the
// epoch like the hub's (ts, max, min, mean, count) that live readings extend.

function lastIndexAtOrBefore(sorted, ts) {
  // Binary search: the index after which a point at `ts` belongs.
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] <= ts) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class RawSeries {
  constructor({ windowMs, maxPoints }) {
    this.windowMs = windowMs;
    this.maxPoints = maxPoints;
    this.ts = [];
    this.value = [];
    this.seq = [];
    // Readings up to this seq came with the history: live copies are skipped.
    this.floorSeq = -1;
  }

  /** Replace the contents with stored readings (oldest first). */
  load(readings) {
    this.ts = readings.map((r) => r.ts);
    this.value = readings.map((r) => r.value);
    this.seq = readings.map((r) => r.seq);
    this.floorSeq = readings.reduce((top, r) => Math.max(top, r.seq), -1);
  }

  add(r) {
    if (r.seq <= this.floorSeq) return false;
    const n = this.ts.length;
    if (n === 0 || r.ts >= this.ts[n - 1]) {
      this.ts.push(r.ts);
      this.value.push(r.value);
      this.seq.push(r.seq);
    } else {
      // Backfill from a device's store-and-forward buffer: keep ts order.
      const at = lastIndexAtOrBefore(this.ts, r.ts);
      this.ts.splice(at, 0, r.ts);
      this.value.splice(at, 0, r.value);
      this.seq.splice(at, 0, r.seq);
    }
    return true;
  }

  /** Drop what scrolled out of the window, and the oldest beyond maxPoints. */
  trim(now) {
    const cut = Math.max(
      lastIndexAtOrBefore(this.ts, now - this.windowMs - 1),
      this.ts.length - this.maxPoints,
    );
    if (cut > 0) {
      this.ts.splice(0, cut);
      this.value.splice(0, cut);
      this.seq.splice(0, cut);
    }
  }

  get length() {
    return this.ts.length;
  }

  data() {
    return [this.ts, this.value];
  }
}

export class BucketSeries {
  constructor({ windowMs, bucketMs }) {
    this.windowMs = windowMs;
    this.bucketMs = bucketMs;
    this.ts = [];
    this.max = [];
    this.min = [];
    this.mean = [];
    this.count = [];
    this.floorSeq = -1;
  }

  load(buckets, floorSeq) {
    this.ts = buckets.map((b) => b.ts);
    this.max = buckets.map((b) => b.max);
    this.min = buckets.map((b) => b.min);
    this.mean = buckets.map((b) => b.mean);
    this.count = buckets.map((b) => b.count);
    // Buckets carry no seqs: readings the page had before asking are in them.
    this.floorSeq = floorSeq ?? -1;
  }

  add(r) {
    if (r.seq <= this.floorSeq) return false;
    const start = Math.floor(r.ts / this.bucketMs) * this.bucketMs;
    const n = this.ts.length;
    let i = n - 1;
    if (n === 0 || start > this.ts[n - 1]) {
      this.ts.push(start);
      this.max.push(r.value);
      this.min.push(r.value);
      this.mean.push(r.value);
      this.count.push(1);
      return true;
    }
    if (start !== this.ts[i]) {
      i = lastIndexAtOrBefore(this.ts, start) - 1;
      if (i < 0 || this.ts[i] !== start) {
        const at = i + 1;
        this.ts.splice(at, 0, start);
        this.max.splice(at, 0, r.value);
        this.min.splice(at, 0, r.value);
        this.mean.splice(at, 0, r.value);
        this.count.splice(at, 0, 1);
        return true;
      }
    }
    const count = this.count[i] + 1;
    this.count[i] = count;
    this.mean[i] += (r.value - this.mean[i]) / count;
    if (r.value > this.max[i]) this.max[i] = r.value;
    if (r.value < this.min[i]) this.min[i] = r.value;
    return true;
  }

  trim(now) {
    const cut = lastIndexAtOrBefore(this.ts, now - this.windowMs - this.bucketMs);
    if (cut > 0) {
      for (const column of [this.ts, this.max, this.min, this.mean, this.count]) {
        column.splice(0, cut);
      }
    }
  }

  get length() {
    return this.ts.length;
  }

  data() {
    return [this.ts, this.max, this.min, this.mean];
  }
}
