"""The device list in pages (`GET /api/devices?limit=...`): what a page asks
for and what it answers, whatever the store.

A page is `limit` devices in device id order after `after`, among those that
match every filter: `status` (online, stale: online but not heard from
within `dashboard.stale_after`, offline), `group` (the group a source or
`[[devices]]` gives), and `q`, a case-insensitive substring of the id, the
group, a metric name or an attribute value. `total` counts every match. The
stores answer from indexes (`hub/store/migrations.py` 4, `postgres_schema`
2), so the first page and the last take the same time.

Devices listed in `[[devices]]` are in the store from the hub's start
(`Store.enroll`), with their config group as the attribute `group`, and a
first_seen of 0 until heard from; so every filter is the store's.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from hub.models import DeviceRecord

Status = Literal["", "online", "offline", "stale"]
STATUSES: tuple[Status, ...] = ("online", "offline", "stale")
MAX_LIMIT = 1000
MAX_QUERY = 100  # characters of q
MAX_OFFSET = 10_000_000
SEARCH_MIN = 3  # shorter q is matched by a scan instead of the trigram index


@dataclass(frozen=True, slots=True)
class DeviceQuery:
    """One page's request."""

    limit: int
    after: str = ""
    q: str = ""
    group: str = ""
    status: Status = ""
    stale_before: int = 0  # ms: an online device last heard before this is stale
    total: int | None = None  # known already (`Totals`): not counted again
    offset: int = 0  # matches skipped after `after` (a jump far down a list)


@dataclass(frozen=True, slots=True)
class DevicePage:
    """One page: its devices, the `after` of the next page (None at the end),
    and how many devices match in all."""

    records: list[DeviceRecord] = field(default_factory=list)
    next: str | None = None
    total: int = 0


@dataclass(frozen=True, slots=True)
class DeviceCounts:
    """How many devices there are, by status and by group."""

    total: int
    status: dict[str, int]
    groups: dict[str, int]

    def to_wire(self) -> dict[str, object]:
        return {"total": self.total, "status": self.status, "groups": self.groups}


class Totals:
    """The totals of recent queries, by their filters, for `ttl` seconds: the
    pages of one search (a dashboard scrolling through it) are counted once,
    not once a page; a total is so at most `ttl` old. Counting is the costly
    part of a broad search (every match), the page itself is not."""

    def __init__(
        self, ttl: float = 2.0, kept: int = 256, clock: Callable[[], float] = time.monotonic
    ):
        self.ttl = ttl
        self.kept = kept
        self.clock = clock
        self._totals: OrderedDict[tuple[str, str, str], tuple[int, float]] = OrderedDict()

    def of(self, query: DeviceQuery) -> DeviceQuery:
        """`query` with its total when one is known and fresh."""
        found = self._totals.get(_filters(query))
        if found is None or self.clock() - found[1] > self.ttl:
            return query
        return replace(query, total=found[0])

    def keep(self, query: DeviceQuery, page: DevicePage) -> None:
        if query.total is not None:
            return
        key = _filters(query)
        self._totals.pop(key, None)
        self._totals[key] = (page.total, self.clock())
        while len(self._totals) > self.kept:
            self._totals.popitem(last=False)


def _filters(query: DeviceQuery) -> tuple[str, str, str]:
    return query.q.lower(), query.group, query.status


def counts_of(by_status: list[tuple[bool, bool, int]], by_group: dict[str, int]) -> DeviceCounts:
    """The counts from (online, heard within stale_after, count) rows and the
    groups' sizes."""
    status: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for online, fresh, count in by_status:
        key = "offline" if not online else "online" if fresh else "stale"
        status[key] += int(count)
    return DeviceCounts(sum(status.values()), status, dict(sorted(by_group.items())))


def like_pattern(text: str) -> str:
    """`text` as a LIKE substring pattern, `\\` escaping its wildcards."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_phrase(text: str) -> str:
    """`text` as an FTS5 phrase: with the trigram tokenizer, a substring."""
    return '"' + text.replace('"', '""') + '"'


def finish(rows: list[DeviceRecord], total: int, query: DeviceQuery) -> DevicePage:
    """The page, from the store's matching records (up to `limit + 1`, in id
    order) and count."""
    records = rows[: query.limit]
    more = len(rows) > query.limit
    return DevicePage(records, records[-1].device_id if more and records else None, total)
