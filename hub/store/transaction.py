"""The SQLite store's write transaction, step by step, on the writer's
connection (`hub.store.sqlite` begins and commits it).

Readings are stored as small integers: each device and each series (one
metric of one device in one unit) is numbered once (migration 3), and a row
of `samples` holds those numbers with ts, value and the device's seq. The
view `readings` shows them by name, as the table did before.

Each step goes to SQLite in as few statements as it can: every statement is
a call through aiosqlite's public API, a hop to its thread and back, and
beside a busy event loop each of those waits its turn. `executemany` is a
statement per row: 3,000 rows took 8.7-11.7 s that way beside a Python
thread that never sleeps, and 62-65 ms as one statement
(docs/performance.md). So the small steps go as one JSON array read by
json_each, and readings in statements of 1,024 rows of bound values, the
rest through json_each: SQLite binds values faster than it parses JSON.
Every value arrives as sent: orjson writes the shortest text that reads back
as the same double, and SQLite reads it so. Statements and json_each keep
the batch's order, so readings are numbered in it (tests/test_store.py
checks both). In an upsert, `WHERE true` lets SQLite tell the SELECT's end
from the ON CONFLICT clause.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from itertools import chain
from typing import Any

import aiosqlite
import orjson

from hub.models import (
    Attribute,
    PendingReading,
    Reading,
    Rejection,
    WriteBatch,
    WriteOutcome,
)

REJECTIONS_KEPT = 10_000
SERIES_KEPT = 10_000  # series numbers kept in memory; others are looked up per batch

VALUES_ROWS = 1024  # readings per statement of bound values
INSERT_VALUES = (
    "INSERT OR IGNORE INTO samples(device, series, ts, value, device_seq) VALUES "
    + ", ".join(["(?, ?, ?, ?, ?)"] * VALUES_ROWS)
)
INSERT_JSON = (
    "INSERT OR IGNORE INTO samples(device, series, ts, value, device_seq) "
    "SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 FROM json_each(?)"
)
INSERT_SERIES = (
    "INSERT INTO series(device, device_id, metric, unit) "
    "SELECT d.id, j.value ->> 0, j.value ->> 1, j.value ->> 2 FROM json_each(?) j "
    "JOIN devices d ON d.device_id = j.value ->> 0 WHERE true ON CONFLICT DO NOTHING"
)
SELECT_SERIES = (
    "SELECT s.device_id, s.metric, s.unit, s.device, s.id FROM json_each(?) j "
    "JOIN series s ON s.device_id = j.value ->> 0 AND s.metric = j.value ->> 1 "
    "AND s.unit = j.value ->> 2"
)
SELECT_SERIES_NAMES = (
    "SELECT s.id, s.device_id, s.metric, nullif(s.unit, '') FROM json_each(?) j "
    "JOIN series s ON s.id = j.value"
)
UPSERT_LATEST = (
    "INSERT INTO metrics(device_id, metric, unit, ts, value) "
    "SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 "
    "FROM json_each(?) WHERE true "
    "ON CONFLICT(device_id, metric) DO UPDATE SET unit = excluded.unit, "
    "ts = excluded.ts, value = excluded.value WHERE excluded.ts >= metrics.ts"
)
UPSERT_ATTRIBUTES = (
    "INSERT INTO attributes(device_id, name, value, ts) "
    "SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 "
    "FROM json_each(?) WHERE true "
    "ON CONFLICT(device_id, name) DO UPDATE SET value = excluded.value, "
    "ts = excluded.ts WHERE excluded.ts >= attributes.ts"
)
UPSERT_SEEN = (
    "INSERT INTO devices(device_id, first_seen, last_seen, online) "
    "SELECT value ->> 0, value ->> 1, value ->> 1, 0 FROM json_each(?) WHERE true "
    "ON CONFLICT(device_id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen), "
    "first_seen = iif(first_seen = 0, excluded.first_seen, first_seen)"
)
# (first_seen 0: a device listed in config that was never heard from; `enroll`)
INSERT_UNSEEN = (
    "INSERT INTO devices(device_id, first_seen, last_seen, online) "
    "SELECT value ->> 0, value ->> 1, value ->> 1, 0 FROM json_each(?) WHERE true "
    "ON CONFLICT(device_id) DO UPDATE SET first_seen = excluded.first_seen, "
    "last_seen = max(last_seen, excluded.last_seen) WHERE first_seen = 0"
)
UPSERT_PRESENCE = (
    "INSERT INTO devices(device_id, first_seen, last_seen, online) "
    "SELECT value ->> 0, value ->> 1, value ->> 1, value ->> 2 FROM json_each(?) WHERE true "
    "ON CONFLICT(device_id) DO UPDATE SET online = excluded.online, "
    "last_seen = max(last_seen, excluded.last_seen), "
    "first_seen = iif(first_seen = 0, excluded.first_seen, first_seen)"
)
ENROLL = (
    "INSERT INTO devices(device_id, first_seen, last_seen, online) "
    "SELECT value ->> 0, 0, 0, 0 FROM json_each(?) WHERE true ON CONFLICT(device_id) DO NOTHING"
)
ENROLL_GROUPS = (
    "INSERT INTO attributes(device_id, name, value, ts) "
    "SELECT value ->> 0, 'group', value ->> 1, 0 FROM json_each(?) WHERE value ->> 1 != '' "
    "ON CONFLICT(device_id, name) DO UPDATE SET value = excluded.value "
    "WHERE value IS NOT excluded.value"
)

SeriesKey = tuple[str, str, str]  # device_id, metric, unit ('' for none)
SeriesIds = tuple[int, int]  # devices.id, series.id
SeriesNamed = tuple[str, str, str | None]  # device_id, metric, unit (None for none)


class SeriesNumbers:
    """The numbers of the series the writer met lately, as committed; the
    rest are looked up (and created) in the transaction that needs them."""

    def __init__(self, kept: int = SERIES_KEPT):
        self.kept = kept
        self._known: OrderedDict[SeriesKey, SeriesIds] = OrderedDict()
        self._new: dict[SeriesKey, SeriesIds] = {}

    def __len__(self) -> int:
        return len(self._known)

    async def resolve(
        self,
        keys: Iterable[SeriesKey],
        create: Callable[[list[SeriesKey]], Awaitable[Iterable[Any]]],
    ) -> dict[SeriesKey, SeriesIds]:
        """The numbers of `keys`; `create` makes the missing series in the
        transaction (where they do not exist yet) and gives (device_id,
        metric, unit, devices.id, series.id) of each."""
        found: dict[SeriesKey, SeriesIds] = {}
        missing: list[SeriesKey] = []
        for key in keys:
            ids = self._known.get(key)
            if ids is None:
                missing.append(key)
            else:
                self._known.move_to_end(key)
                found[key] = ids
        if missing:
            for device_id, metric, unit, device, series in await create(missing):
                found[(device_id, metric, unit)] = self._new[(device_id, metric, unit)] = (
                    device,
                    series,
                )
        return found

    def committed(self) -> None:
        """The transaction committed: what it numbered is known from now on."""
        self._known.update(self._new)
        self._new.clear()
        while len(self._known) > self.kept:
            self._known.popitem(last=False)

    def rolled_back(self) -> None:
        """The transaction rolled back: the series it created are gone again."""
        self._new.clear()


class SeriesNames:
    """The names of the series (device id, metric, unit) a reader met
    lately, by number. A series is never renamed or deleted, and a reader
    meets only committed ones, so what is kept stays true."""

    def __init__(self, kept: int = SERIES_KEPT):
        self.kept = kept
        self._known: OrderedDict[int, SeriesNamed] = OrderedDict()

    def __len__(self) -> int:
        return len(self._known)

    async def of(
        self,
        numbers: Iterable[int],
        look_up: Callable[[list[int]], Awaitable[Iterable[tuple[int, str, str, str | None]]]],
    ) -> dict[int, SeriesNamed]:
        """The names of the series `numbers`; `look_up` gives (number,
        device_id, metric, unit) of the ones not kept (a query on the
        reader's connection)."""
        found: dict[int, SeriesNamed] = {}
        missing: list[int] = []
        for number in numbers:
            names = self._known.get(number)
            if names is None:
                missing.append(number)
            else:
                self._known.move_to_end(number)
                found[number] = names
        if missing:
            for number, device_id, metric, unit in await look_up(missing):
                found[number] = self._known[number] = (device_id, metric, unit)
            while len(self._known) > self.kept:
                self._known.popitem(last=False)
        return found


def named(rows: Iterable[Any], names: dict[int, SeriesNamed]) -> list[Reading]:
    """Rows of (seq, series, ts, value) as readings, with their series' names."""
    readings = []
    make = Reading._make  # from one tuple: half the time of Reading(...)'s six arguments
    for number, series, ts, value in rows:
        device_id, metric, unit = names[series]
        readings.append(make((number, device_id, metric, ts, value, unit)))
    return readings


async def write(
    db: aiosqlite.Connection, series: SeriesNumbers, batch: WriteBatch, head: int
) -> tuple[WriteOutcome, int]:
    """The transaction's steps, between BEGIN and COMMIT: what was stored, and
    the seq allocator's new position."""
    await upsert_devices(db, batch)
    outcome, head = await insert_readings(db, series, batch.readings, head)
    await upsert_latest(db, outcome.readings, batch.attributes)
    await insert_rejections(db, batch.rejections)
    return outcome, head


async def insert_readings(
    db: aiosqlite.Connection,
    series: SeriesNumbers,
    pending: tuple[PendingReading, ...],
    head: int,
) -> tuple[WriteOutcome, int]:
    """Insert, and return what was stored with the allocator's new position."""
    if not pending:
        return WriteOutcome((), ()), head
    keys = {(p.device_id, p.metric, p.unit or "") for p in pending}
    numbers = await series.resolve(keys, lambda missing: create_series(db, missing))
    rows = [
        (*numbers[(p.device_id, p.metric, p.unit or "")], p.ts, p.value, p.device_seq)
        for p in pending
    ]
    inserted, at = 0, 0
    while len(rows) - at >= VALUES_ROWS:
        values = list(chain.from_iterable(rows[at : at + VALUES_ROWS]))
        inserted += (await db.execute(INSERT_VALUES, values)).rowcount
        at += VALUES_ROWS
    if at < len(rows):
        inserted += (await db.execute(INSERT_JSON, (orjson.dumps(rows[at:]),))).rowcount
    if inserted == len(pending):
        # No duplicates: AUTOINCREMENT with a single writer numbers them in order.
        readings = tuple(
            Reading(head + i, p.device_id, p.metric, p.ts, p.value, p.unit)
            for i, p in enumerate(pending, start=1)
        )
        return WriteOutcome(readings, (True,) * len(pending)), head + len(pending)
    new = await db.execute_fetchall(
        "SELECT r.seq, s.device_id, s.metric, r.device_seq FROM samples r "
        "JOIN series s ON s.id = r.series WHERE r.seq > ? ORDER BY r.seq",
        (head,),
    )
    [(sequence,)] = await db.execute_fetchall(
        "SELECT seq FROM sqlite_sequence WHERE name = 'samples'"
    )
    return match_stored(pending, new), int(sequence)


async def create_series(db: aiosqlite.Connection, keys: list[SeriesKey]) -> Iterable[Any]:
    """Create the series `keys` where missing; (device_id, metric, unit,
    devices.id, series.id) of each."""
    document = orjson.dumps(keys)
    await db.execute(INSERT_SERIES, (document,))
    return await db.execute_fetchall(SELECT_SERIES, (document,))


def match_stored(pending: tuple[PendingReading, ...], rows: Iterable[Any]) -> WriteOutcome:
    """Pair each pending reading with the row it became, if it became one.

    The rows are the new ones in insertion order; a pending reading that has no
    row was a duplicate. A key is inserted at most once, by its first pending
    occurrence, so matching in order is exact.
    """
    new = list(rows)
    readings: list[Reading] = []
    stored: list[bool] = []
    position = 0
    for p in pending:
        if position < len(new):
            seq, device_id, metric, device_seq = new[position]
            if (device_id, metric, device_seq) == (p.device_id, p.metric, p.device_seq):
                readings.append(Reading(seq, p.device_id, p.metric, p.ts, p.value, p.unit))
                stored.append(True)
                position += 1
                continue
        stored.append(False)
    return WriteOutcome(tuple(readings), tuple(stored))


async def upsert_devices(db: aiosqlite.Connection, batch: WriteBatch) -> None:
    """Devices heard from, their presence, and a row for every device a
    reading names (its number is what the reading's row holds)."""
    if batch.seen:
        await db.execute(UPSERT_SEEN, (orjson.dumps(list(batch.seen.items())),))
    unseen: dict[str, int] = {}
    for p in batch.readings:
        if p.device_id not in batch.seen and p.device_id not in unseen:
            unseen[p.device_id] = p.ts
    if unseen:
        await db.execute(INSERT_UNSEEN, (orjson.dumps(list(unseen.items())),))
    if batch.presence:
        # in order: a device that came and went within the batch ends offline
        changes = [(p.device_id, p.last_seen, int(p.online)) for p in batch.presence]
        await db.execute(UPSERT_PRESENCE, (orjson.dumps(changes),))


async def upsert_latest(
    db: aiosqlite.Connection, readings: Iterable[Reading], attributes: tuple[Attribute, ...]
) -> None:
    latest: dict[tuple[str, str], Reading] = {}
    for reading in readings:
        key = (reading.device_id, reading.metric)
        if key not in latest or reading.ts >= latest[key].ts:
            latest[key] = reading
    if latest:
        values = [(r.device_id, r.metric, r.unit, r.ts, r.value) for r in latest.values()]
        await db.execute(UPSERT_LATEST, (orjson.dumps(values),))
    if attributes:
        named = [(a.device_id, a.name, a.value, a.ts) for a in attributes]
        await db.execute(UPSERT_ATTRIBUTES, (orjson.dumps(named),))


async def insert_rejections(db: aiosqlite.Connection, rejections: tuple[Rejection, ...]) -> None:
    if not rejections:
        return
    await db.executemany(
        "INSERT INTO rejections(received_ms, source, device_id, reason, detail, excerpt) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (r.received_ms, str(r.source), r.device_id, str(r.reason), r.detail, r.excerpt)
            for r in rejections
        ],
    )
    # The dead-letter table is a window on recent trouble, not an archive.
    await db.execute(
        "DELETE FROM rejections WHERE id <= (SELECT max(id) FROM rejections) - ?",
        (REJECTIONS_KEPT,),
    )
