// The device list of one search (q, group, status) as the hub pages it
// (`GET /api/devices?limit&after`, in id order): the ids as far as fetched,
// and the data of the rows the list wants, fetched on demand.
//
// Rows next to known ones are fetched after the last id known (`after`); a
// jump far down (the scrollbar dragged) asks for the rows wanted by their
// place (`offset`), one request, the list showing placeholders meanwhile.
// Ids once fetched stay (a string each, in a sparse array), so coming back,
// or down again, is one page away.

import { devicePage } from "./api.js";

export const PAGE = 200; // rows fetched at least when any is missing
const PAGE_MAX = 1000; // the hub's largest page
const RETRY_MS = 2000;

// Fetches started, page-wide: a device's `fetched` says which fetch described
// it last, and `refresh()` asks again for rows described by earlier ones.
let fetches = 0;

/** The number of a fetch starting now (to pass to `store.loadDevices`). */
export function newFetch() {
  fetches += 1;
  return fetches;
}

export class DevicePages {
  constructor(store, query, onChange) {
    this.store = store;
    this.query = query; // {q, group, status}
    this.onChange = onChange;
    this.ids = []; // row index -> device id, as far as fetched
    this.next = undefined; // after the last id known: more (an id), the end (null), unknown (undefined)
    this.total = null; // matches in all, from the latest page (null: none yet)
    this.from = 0; // the rows wanted: [from, to)
    this.to = 0;
    this.freshAfter = 0; // rows described by fetches up to this one are fetched again
    this.endFetched = 0; // the fetch that found the end
    this.busy = false;
    this.closed = false;
    this.controller = null;
    this.retry = null; // after a failed fetch: the timer that tries again
    this.error = null;
  }

  /** The first page has come: the list can show this search. */
  get ready() {
    return this.total !== null;
  }

  /** Rows to lay out: every id once the end is known, else the hub's total
   * (one more than the ids known, should devices have come meanwhile). */
  get count() {
    if (!this.ready) return 0;
    if (this.next === null) return this.ids.length;
    return Math.max(this.total, this.ids.length + 1);
  }

  /** The rows on screen (with overscan) changed. */
  want(from, to) {
    this.from = from;
    this.to = to;
    this.pump();
  }

  /** Fetch the wanted rows again, even those already described (and now,
   * should a fetch have failed: a connect or a token may have mended it). */
  refresh() {
    this.freshAfter = fetches;
    clearTimeout(this.retry);
    this.retry = null;
    this.pump();
  }

  close() {
    this.closed = true;
    this.controller?.abort();
    clearTimeout(this.retry);
  }

  /** The next fetch the wanted rows need, if any: `{start, limit}`. */
  job() {
    const to = this.ready ? Math.min(this.to, this.count) : Math.max(this.to, 1);
    for (let i = this.from; i < to; i++) {
      const id = this.ids[i];
      if (id === undefined) {
        if (this.next === null && i >= this.ids.length) return null;
        return { start: i, limit: Math.min(PAGE_MAX, Math.max(PAGE, to - i)) };
      }
      const device = this.store.devices.get(id);
      if (!device || device.fetched <= this.freshAfter) {
        return { start: i, limit: Math.min(PAGE_MAX, Math.max(PAGE, to - i)) };
      }
    }
    // The end in view (or no rows at all), since a refresh: devices may have come after it.
    if (this.next === null && this.to >= this.ids.length && this.endFetched <= this.freshAfter) {
      return { start: this.ids.length, limit: PAGE };
    }
    return null;
  }

  async pump() {
    if (this.busy || this.closed || this.retry !== null) return;
    const job = this.job();
    if (job === null) return;
    this.busy = true;
    const number = newFetch();
    const controller = new AbortController();
    this.controller = controller;
    // After the row before, when known; else by place.
    const before = job.start > 0 ? this.ids[job.start - 1] : "";
    const at = before === undefined ? { offset: job.start } : { after: before };
    try {
      const page = await devicePage({ ...this.query, limit: job.limit, ...at, signal: controller.signal });
      if (this.closed) return;
      this.take(job.start, page, number);
      this.error = null;
    } catch (error) {
      if (this.closed) return;
      this.error = error;
      this.retry = setTimeout(() => {
        this.retry = null;
        this.pump();
      }, RETRY_MS);
      return;
    } finally {
      this.busy = false;
      if (!this.closed) this.onChange();
    }
    this.pump();
  }

  /** A page for rows from `start`: its ids, and the data of the wanted rows. */
  take(start, page, number) {
    const ids = page.devices.map((d) => d.device_id);
    const end = start + ids.length;
    const clash = ids.some((id, k) => this.ids[start + k] !== undefined && this.ids[start + k] !== id);
    if (clash) this.ids.length = start; // devices came or went: what followed is fetched again
    ids.forEach((id, k) => {
      this.ids[start + k] = id;
    });
    if (page.next === null) {
      this.ids.length = end; // the end of the list
      this.next = null;
      this.endFetched = number;
    } else if (end >= this.ids.length) {
      this.next = page.next;
    }
    this.total = page.total;
    const near = page.devices.filter((_, k) => start + k >= this.from - PAGE && start + k < this.to + PAGE);
    this.store.loadDevices(near, number);
  }
}
