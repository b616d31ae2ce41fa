// A virtualized list of fixed-height rows in a block-level `body` (a tbody
// laid out as a block): only the rows on screen, plus `overscan` either side,
// are in the DOM; the body's padding stands in for the rest, so the scroll
// height is that of every row. The rows scroll with `scroller` (an element
// with overflow) or, where it does not scroll (a phone's stacked layout),
// with the page: what is on screen is measured, not assumed.

const DEFAULT_ROW_PX = 68;

export class VirtualList {
  constructor({ scroller, body, overscan = 8, onMove }) {
    this.scroller = scroller;
    this.body = body;
    this.overscan = overscan;
    this.rowPx = DEFAULT_ROW_PX; // measured from a placed row
    this.count = 0;
    this.first = 0; // rows placed: [first, last)
    this.last = 0;
    const moved = () => onMove();
    scroller.addEventListener("scroll", moved, { passive: true });
    window.addEventListener("scroll", moved, { passive: true });
    new ResizeObserver(moved).observe(scroller);
  }

  /** The rows to place, on screen and overscan: `{first, last}`, or null
   * when the list is not shown at all (hidden behind the open device). */
  range() {
    if (this.scroller.getClientRects().length === 0) return null; // display: none
    const view = this.scroller.getBoundingClientRect();
    const top = Math.max(view.top, 0);
    const bottom = Math.min(view.bottom, window.innerHeight);
    const origin = this.body.getBoundingClientRect().top; // where row 0 is
    const clamp = (i) => Math.min(Math.max(i, 0), this.count);
    return {
      first: clamp(Math.floor((top - origin) / this.rowPx) - this.overscan),
      last: clamp(Math.ceil((Math.max(bottom, top) - origin) / this.rowPx) + this.overscan),
    };
  }

  /** Show `rows` (elements, in order) as rows [first, first + rows.length)
   * of `count`. Rows already in place stay put (a focused row keeps focus);
   * only those that left are removed and those that came inserted. */
  place(first, rows, count) {
    this.count = count;
    this.first = first;
    this.last = first + rows.length;
    const keep = new Set(rows);
    for (const node of [...this.body.children]) if (!keep.has(node)) node.remove();
    let at = this.body.firstElementChild;
    for (const node of rows) {
      if (node === at) at = at.nextElementSibling;
      else this.body.insertBefore(node, at);
    }
    this.body.style.paddingTop = `${first * this.rowPx}px`;
    this.body.style.paddingBottom = `${(count - this.last) * this.rowPx}px`;
  }

  /** The row height as laid out (it differs by screen width): true when it
   * changed, and the rows must be placed again. */
  measure() {
    const row = this.body.firstElementChild;
    if (!row) return false;
    const px = row.getBoundingClientRect().height;
    if (px === 0 || Math.abs(px - this.rowPx) < 0.01) return false;
    this.rowPx = px;
    return true;
  }

  /** Back to the top: a new search starts at its first row. */
  toTop() {
    this.scroller.scrollTop = 0;
    const top = this.scroller.getBoundingClientRect().top;
    if (top < 0) window.scrollBy(0, top);
  }
}
