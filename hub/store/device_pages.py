"""The device list in pages (`GET /api/devices?limit=...`): what a page asks
for and what it answers, whatever the store.

A page is `limit` devices in device id order after `after`, among those that
match every filter: `status` (online, stale: online but not heard from
within `dashboard.stale_after`, offline), `group` (the group a source or
`[[devices]]` gives), and `q`, a case-insensitive substring of the id, the
group, a metric name or an attribute value. `total` counts every match. The
stores answer from indexes (`hub/store/migrations.py` 4, `postgres_schema`
2), so the first page and the last take the same time.

Devices listed in `[[devices]]` but never heard from are not in the store;
they are few (the config's size) and merged in here (`finish`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from hub.models import DeviceRecord

Status = Literal["", "online", "offline", "stale"]
STATUSES: tuple[Status, ...] = ("online", "offline", "stale")
MAX_LIMIT = 1000
MAX_QUERY = 100  # characters of q
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
    # Devices the config (or a source, this run) puts in `group`, and in any
    # group whose name holds `q`: groups not stored as attributes.
    members: tuple[str, ...] = ()
    q_members: tuple[str, ...] = ()
    # [[devices]] entries, and their groups: the store merges in those it
    # has never heard from.
    listed: tuple[str, ...] = ()
    listed_groups: Mapping[str, str] = field(default_factory=dict)


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


def counts_of(
    by_status: list[tuple[bool, bool, int]],
    by_group: dict[str, int],
    unseen: int,
) -> DeviceCounts:
    """The counts from (online, heard within stale_after, count) rows and the
    groups' sizes, with `unseen` listed devices never heard from (offline)."""
    status: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for online, fresh, count in by_status:
        key = "offline" if not online else "online" if fresh else "stale"
        status[key] += int(count)
    status["offline"] += unseen
    return DeviceCounts(sum(status.values()), status, dict(sorted(by_group.items())))


def like_pattern(text: str) -> str:
    """`text` as a LIKE substring pattern, `\\` escaping its wildcards."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_phrase(text: str) -> str:
    """`text` as an FTS5 phrase: with the trigram tokenizer, a substring."""
    return '"' + text.replace('"', '""') + '"'


def finish(
    rows: list[DeviceRecord], total: int, query: DeviceQuery, known_listed: set[str]
) -> DevicePage:
    """The page, from the store's matching records (up to `limit + 1`, in id
    order) and count, with the listed devices the store has never heard of
    (all but `known_listed`) merged in where they match. Those stand as
    records with no first_seen (0) and nothing else."""
    unseen = [
        device_id
        for device_id in query.listed
        if device_id not in known_listed and _matches_unseen(device_id, query)
    ]
    if unseen:
        rows = sorted(
            [*rows, *(_unseen(d) for d in unseen if d > query.after)], key=lambda r: r.device_id
        )
    records = rows[: query.limit]
    more = len(rows) > query.limit
    return DevicePage(
        records, records[-1].device_id if more and records else None, total + len(unseen)
    )


def _matches_unseen(device_id: str, query: DeviceQuery) -> bool:
    group = query.listed_groups.get(device_id, "")
    needle = query.q.lower()
    return (
        query.status in ("", "offline")
        and (not query.group or group == query.group)
        and (not needle or needle in device_id.lower() or needle in group.lower())
    )


def _unseen(device_id: str) -> DeviceRecord:
    return DeviceRecord(device_id, 0, 0, False, (), ())
