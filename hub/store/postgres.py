"""The PostgreSQL store (`storage.url`): one database shared by every hub of
a cluster, through asyncpg.

What it keeps and how it reads match the SQLite store (`hub.store.sqlite`);
what differs is that several hubs write:

- **One ordered log.** Each write transaction takes its block of seqs from
  the one-row `log_head` table after everything else that does not need a
  seq, and holds that row's lock until COMMIT: writers commit in seq order,
  so a reader never sees a seq before a smaller one that will still commit
  (`hub.store.postgres_schema`). A transaction that rolls back leaves no
  hole: its block was never committed either.
- **Following it.** A commit sends `NOTIFY hub_log`. Each hub LISTENs on a
  connection of its own and, when woken (or every `FOLLOW_POLL` seconds, in
  case a notification was lost with its connection), reads what was
  committed after its position up to `log_head`, in one snapshot, and hands
  it to its `Feed` in seq order: its own commits the same way as everyone
  else's. So every hub's dashboards get every reading once, in seq order.
- **Device state.** Dedup by (device, device seq, series) is the unique
  index `samples_dedup`, whichever hub stores first. Latest values and
  attributes keep the newest timestamp (`WHERE excluded.ts >= ...`), as a
  device's messages may reach the hubs out of order. Rows that several hubs
  may lock (devices, series, latest values) are written in key order, so two
  writers never wait on each other in a cycle.

Connections come from two pools (writes; reads and the log) and a listener;
a pool replaces a connection that broke, so when PostgreSQL restarts the
writer's retries (`hub.writer`) succeed once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from hub.errors import StoreClosed, StoreError
from hub.models import (
    Attribute,
    Bucket,
    CommandRecord,
    DeviceRecord,
    KnownDevice,
    PendingReading,
    PresenceChange,
    Reading,
    Rejection,
    RejectReason,
    Source,
    WriteBatch,
    WriteOutcome,
)
from hub.store.device_pages import (
    DeviceCounts,
    DevicePage,
    DeviceQuery,
    counts_of,
    finish,
    like_pattern,
)
from hub.store.feed import Committed, Feed, Follower
from hub.store.postgres_schema import MIGRATIONS
from hub.store.reads import FAR, buckets_of, device_records, oldest_first, window
from hub.store.transaction import (
    REJECTIONS_KEPT,
    SeriesIds,
    SeriesKey,
    SeriesNames,
    SeriesNumbers,
    named,
)

log = logging.getLogger(__name__)

CHANNEL = "hub_log"  # NOTIFY after every commit that took seqs
FOLLOW_POLL = 1.0  # seconds between two reads of the log when no notification came
FOLLOW_SPAN = 20_000  # seqs read from the log at most per query
FOLLOW_RETRY_MAX = 5.0  # seconds between attempts to follow while the database is away
PRESENCE_LOG_KEPT = 1_000_000  # seqs of presence changes kept behind the head
COMMAND_TIMEOUT = 30.0  # seconds a statement may take before the operation fails
NOTIFY_MAX = 7900  # bytes of a NOTIFY payload (PostgreSQL refuses 8,000 and more)
MIGRATION_LOCK = 7_171_717  # advisory lock key: one hub migrates at a time
# What the database being away looks like. InternalClientError included: when
# PostgreSQL shuts down under load, a pooled connection can be left mid-operation
# and the next statement on it fails with "cannot switch to state 15; another
# operation (2) is in progress"; not caught, it ended the writer's task, and the
# hub took messages it would never commit while /readyz still said ready.
DOWN = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)

Stamped = TypeVar("Stamped", PendingReading, Attribute)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # a connection of its own, or one lent by a pool
    Db: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]


class PostgresStore:
    """`hub.store.base.Store` on PostgreSQL, for one hub of a cluster."""

    def __init__(self, url: str, *, pool_size: int = 4):
        self.url = url
        self.pool_size = pool_size
        self._writes: asyncpg.Pool | None = None
        self._reads: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._following: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._writing = asyncio.Lock()
        self._catching_up = asyncio.Lock()
        self._epoch = ""
        self._committed = 0  # the head after this hub's last commit
        self._purged_through = 0
        self._failing: str | None = None
        # Series numbers this hub met, once committed; others are looked up.
        self._series = SeriesNumbers()
        self._names = SeriesNames()
        self.feed = Feed()
        self._channels: dict[str, list[Callable[[str], None]]] = {}

    # -- lifetime -----------------------------------------------------------

    @property
    def epoch(self) -> str:
        return self._epoch

    @property
    def head(self) -> int:
        """The highest seq this hub knows committed: its own last commit, or
        what it followed of everyone's."""
        return max(self._committed, self.feed.head)

    @property
    def purged_through(self) -> int:
        return self._purged_through

    @property
    def failing(self) -> str | None:
        return self._failing

    def status(self) -> dict[str, object]:
        return {"url": redacted(self.url), "following": self.feed.head, "failing": self._failing}

    async def open(self) -> None:
        try:
            await create_database(self.url)
            self._writes = await asyncpg.create_pool(
                self.url, min_size=1, max_size=2, command_timeout=COMMAND_TIMEOUT
            )
            self._reads = await asyncpg.create_pool(
                self.url, min_size=1, max_size=self.pool_size, command_timeout=COMMAND_TIMEOUT
            )
            async with self._writes.acquire() as connection:
                await migrate(connection)
                self._epoch = await connection.fetchval(
                    "SELECT value FROM meta WHERE key = 'epoch'"
                )
                head = await connection.fetchval("SELECT head FROM log_head")
                purged = await connection.fetchval(
                    "SELECT value FROM meta WHERE key = 'purged_through'"
                )
            self._committed = int(head)
            self._purged_through = int(purged or 0)
            self.feed = Feed(self._committed)
            await self._listen()
        except DOWN as exc:
            await self.close()
            raise StoreError("open", f"{redacted(self.url)}: {exc}") from exc
        except BaseException:
            await self.close()
            raise
        self._following = asyncio.create_task(self._follow_log(), name="postgres-log")

    async def close(self) -> None:
        if self._following is not None:
            self._following.cancel()
            await asyncio.gather(self._following, return_exceptions=True)
            self._following = None
        if self._listener is not None:
            listener, self._listener = self._listener, None
            if not listener.is_closed():
                await listener.close()
        for name in ("_reads", "_writes"):
            pool = getattr(self, name)
            if pool is not None:
                setattr(self, name, None)
                await pool.close()

    async def _listen(self) -> None:
        self._listener = await asyncpg.connect(self.url)
        await self._listener.add_listener(CHANNEL, self._notified)
        for channel, callbacks in self._channels.items():
            for callback in callbacks:
                await self._listener.add_listener(channel, _payload_to(callback))

    def _notified(self, *_: object) -> None:
        self._wake.set()

    # -- notifications between hubs (hub.commands) ------------------------------

    def on_notification(self, channel: str, callback: Callable[[str], None]) -> None:
        """Call `callback` with the payload of every NOTIFY on `channel`, from
        any hub (this one included), from when the store is open. What is
        sent while a hub's listening connection is down does not reach it."""
        self._channels.setdefault(channel, []).append(callback)

    async def notify(self, channel: str, payload: str) -> None:
        """NOTIFY every hub on `channel` (payloads up to NOTIFY_MAX bytes)."""
        try:
            await self._writer.execute("SELECT pg_notify($1, $2)", channel, payload)
        except DOWN as exc:
            raise StoreError("notify", str(exc)) from exc

    # -- writing ------------------------------------------------------------

    async def write(self, batch: WriteBatch) -> WriteOutcome:
        async with self._writing:
            try:
                async with (
                    self._writer.acquire() as connection,
                    connection.transaction(),
                ):
                    outcome, head = await self._transaction(connection, batch)
            except BaseException as exc:
                self._series.rolled_back()
                if isinstance(exc, DOWN):
                    self._failing = str(exc) or type(exc).__name__
                    raise StoreError("write", self._failing) from exc
                raise
            self._failing = None
            self._committed = max(self._committed, head)
            self._series.committed()
        return outcome

    async def _transaction(self, db: Db, batch: WriteBatch) -> tuple[WriteOutcome, int]:
        presence = await upsert_devices(db, batch)
        keys = {(p.device_id, p.metric, p.unit or "") for p in batch.readings}
        numbers = await self._series.resolve(keys, lambda missing: create_series(db, missing))
        await upsert_latest(db, batch.readings, batch.attributes)
        await insert_rejections(db, batch.rejections)
        # From here to COMMIT this transaction holds the allocator's row.
        taken = len(batch.readings) + len(presence)
        if not taken:
            return WriteOutcome((), ()), 0
        head = int(await db.fetchval("UPDATE log_head SET head = head + $1 RETURNING head", taken))
        first = head - taken + 1
        outcome = await insert_readings(db, batch.readings, numbers, first)
        if presence:
            seqs = range(first + len(batch.readings), head + 1)
            await db.execute(
                "INSERT INTO presence_log(seq, device_id, online, last_seen) "
                "SELECT * FROM unnest($1::bigint[], $2::text[], $3::boolean[], $4::bigint[])",
                list(seqs),
                [p.device_id for p in presence],
                [p.online for p in presence],
                [p.last_seen for p in presence],
            )
            await db.execute("DELETE FROM presence_log WHERE seq <= $1", head - PRESENCE_LOG_KEPT)
        await db.execute("SELECT pg_notify($1, $2)", CHANNEL, str(head))
        return outcome, head

    async def record_command(self, record: CommandRecord) -> None:
        try:
            await self._writer.execute(
                "INSERT INTO commands(id, device_id, name, args, link, sent_ms, done_ms, "
                "outcome, reply) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
                "ON CONFLICT (id) DO UPDATE SET device_id = excluded.device_id, "
                "name = excluded.name, args = excluded.args, link = excluded.link, "
                "sent_ms = excluded.sent_ms, done_ms = excluded.done_ms, "
                "outcome = excluded.outcome, reply = excluded.reply",
                record.id,
                record.device_id,
                record.name,
                record.args,
                record.link,
                record.sent_ms,
                record.done_ms,
                record.outcome,
                record.reply,
            )
        except DOWN as exc:
            raise StoreError("record command", str(exc)) from exc

    async def purge(self, before_ts: int, limit: int) -> int:
        """Delete the oldest readings, in seq order, while their ts is before
        `before_ts`, at most `limit`. Hubs purging at once delete the same
        prefix; `purged_through` only grows."""
        try:
            rows = await self._fetch(
                "SELECT seq, ts FROM samples WHERE seq > $1 ORDER BY seq LIMIT $2",
                self._purged_through,
                limit,
            )
            last = self._purged_through
            for seq, ts in rows:
                if ts >= before_ts:
                    break
                last = seq
            if last == self._purged_through:
                return 0
            async with (
                self._writer.acquire() as connection,
                connection.transaction(),
            ):
                status = await connection.execute("DELETE FROM samples WHERE seq <= $1", last)
                await connection.execute(
                    "INSERT INTO meta(key, value) VALUES ('purged_through', $1) "
                    "ON CONFLICT (key) DO UPDATE SET value = "
                    "greatest(meta.value::bigint, excluded.value::bigint)::text",
                    str(last),
                )
        except DOWN as exc:
            raise StoreError("purge", str(exc)) from exc
        self._purged_through = max(self._purged_through, last)
        return int(status.split()[-1])

    # -- following the log ----------------------------------------------------

    def follow(self, after: int) -> Follower:
        return self.feed.follow(after, self._read_back)

    async def _read_back(self, after: int, upto: int, limit: int) -> list[Reading]:
        return await self.readings_after(after, upto, None, limit)

    async def _follow_log(self) -> None:
        """Hand everything committed, by any hub, to the feed, in seq order."""
        attempt = 0
        while True:
            self._wake.clear()
            try:
                if self._listener is None or self._listener.is_closed():
                    await self._listen()
                await self.catch_up()
                attempt = 0
            except DOWN as exc:
                attempt += 1
                log.warning("following the PostgreSQL log: %s (attempt %d)", exc, attempt)
                await asyncio.sleep(min(FOLLOW_RETRY_MAX, 0.1 * 2**attempt))
                continue
            # asyncio.timeout, not wait_for: on Python 3.11 a wait_for
            # cancelled as its timeout fires can swallow the cancellation,
            # and close() would wait for this task forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FOLLOW_POLL):
                    await self._wake.wait()

    async def catch_up(self) -> None:
        """Hand the feed what was committed after its head, read in one
        snapshot (one catch-up at a time; the follow task calls this when
        woken)."""
        async with self._catching_up:
            await self._read_log()

    async def _read_log(self) -> None:
        async with (
            self._reader.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            [(head, purged)] = await connection.fetch(
                "SELECT head, (SELECT value FROM meta WHERE key = 'purged_through') FROM log_head"
            )
            self._purged_through = max(self._purged_through, int(purged or 0))
            position = self.feed.head
            while position < head:
                upto = min(head, position + FOLLOW_SPAN)
                rows = await connection.fetch(
                    "SELECT seq, series, ts, value FROM samples "
                    "WHERE seq > $1 AND seq <= $2 ORDER BY seq",
                    position,
                    upto,
                )
                readings = await self._named(connection, rows)
                presence = await connection.fetch(
                    "SELECT device_id, online, last_seen FROM presence_log "
                    "WHERE seq > $1 AND seq <= $2 ORDER BY seq",
                    position,
                    upto,
                )
                self.feed.committed(
                    Committed(
                        position,
                        upto,
                        tuple(readings),
                        tuple(PresenceChange(d, o, t) for d, o, t in presence),
                    )
                )
                position = upto

    async def _named(self, connection: Db, rows: Sequence[Any]) -> list[Reading]:
        async def look_up(numbers: list[int]) -> list[Any]:
            return list(
                await connection.fetch(
                    "SELECT id, device_id, metric, nullif(unit, '') FROM series "
                    "WHERE id = ANY($1::int[])",
                    numbers,
                )
            )

        names = await self._names.of({row[1] for row in rows}, look_up)
        return named(rows, names)

    # -- reading ------------------------------------------------------------

    async def readings_after(
        self, seq: int, upto: int, device_ids: Collection[str] | None, limit: int
    ) -> list[Reading]:
        where, params = _seq_range(seq, upto, device_ids)
        try:
            async with self._reader.acquire() as connection:
                rows = await connection.fetch(
                    f"SELECT seq, series, ts, value FROM samples WHERE {where} "
                    f"ORDER BY seq LIMIT ${len(params) + 1}",
                    *params,
                    limit,
                )
                return await self._named(connection, rows)
        except DOWN as exc:
            raise StoreError("query", str(exc)) from exc

    async def count_after(
        self, seq: int, upto: int, device_ids: Collection[str] | None, limit: int
    ) -> int:
        where, params = _seq_range(seq, upto, device_ids)
        rows = await self._fetch(
            f"SELECT count(*) FROM (SELECT 1 FROM samples WHERE {where} "
            f"LIMIT ${len(params) + 1}) AS found",
            *params,
            limit,
        )
        return int(rows[0][0])

    async def readings(
        self, device_id: str, metric: str, start: int | None, end: int | None, limit: int
    ) -> list[Reading]:
        lower, upper, order = window(start, end)
        found: list[Reading] = []
        for series, unit in await self._series_of(device_id, metric):
            rows = await self._fetch(
                "SELECT seq, ts, value FROM samples WHERE series = $1 AND ts BETWEEN $2 AND $3 "
                f"ORDER BY ts {order}, seq {order} LIMIT $4",
                series,
                lower,
                upper,
                limit,
            )
            found += [Reading(seq, device_id, metric, ts, value, unit) for seq, ts, value in rows]
        return oldest_first(found, start, limit)

    async def buckets(
        self,
        device_id: str,
        metric: str,
        start: int | None,
        end: int | None,
        bucket_ms: int,
        limit: int,
        through: int | None = None,
    ) -> list[Bucket]:
        lower, upper, order = window(start, end)
        series = [number for number, _ in await self._series_of(device_id, metric)]
        if not series:
            return []
        rows = await self._fetch(
            "SELECT (ts / $1) * $1 AS bucket, min(value), max(value), avg(value), count(*) "
            "FROM samples WHERE series = ANY($2::int[]) AND ts BETWEEN $3 AND $4 "
            f"AND seq <= $5 GROUP BY bucket ORDER BY bucket {order} LIMIT $6",
            bucket_ms,
            series,
            lower,
            upper,
            FAR if through is None else through,
            limit,
        )
        return buckets_of(rows, start)

    async def _series_of(self, device_id: str, metric: str) -> list[tuple[int, str | None]]:
        rows = await self._fetch(
            "SELECT id, nullif(unit, '') FROM series WHERE device_id = $1 AND metric = $2",
            device_id,
            metric,
        )
        return [(int(number), unit) for number, unit in rows]

    async def metric_unit(self, device_id: str, metric: str) -> str | None:
        rows = await self._fetch(
            "SELECT unit FROM metrics WHERE device_id = $1 AND metric = $2", device_id, metric
        )
        return rows[0][0] if rows else None

    async def devices(self) -> list[DeviceRecord]:
        return device_records(
            await self._fetch(
                "SELECT device_id, first_seen, last_seen, online FROM devices ORDER BY device_id"
            ),
            await self._fetch(
                "SELECT device_id, metric, unit, ts, value FROM metrics ORDER BY device_id, metric"
            ),
            await self._fetch(
                "SELECT device_id, name, value, ts FROM attributes ORDER BY device_id, name"
            ),
        )

    async def known_devices(self) -> list[KnownDevice]:
        rows = await self._fetch(
            "SELECT d.device_id, d.online, d.last_seen, s.value, n.value FROM devices d "
            "LEFT JOIN attributes s ON s.device_id = d.device_id AND s.name = 'source' "
            "LEFT JOIN attributes n ON n.device_id = d.device_id AND n.name = 'name'"
        )
        return [
            KnownDevice(d, bool(online), last, source, name)
            for d, online, last, source, name in rows
        ]

    async def device_page(self, query: DeviceQuery) -> DevicePage:
        where, params = _page_filters(query)
        after, limit, offset = len(params) + 1, len(params) + 2, len(params) + 3
        rows = await self._fetch(
            "SELECT device_id, first_seen, last_seen, online FROM devices d "
            f"WHERE d.device_id > ${after}{where} ORDER BY d.device_id "
            f"LIMIT ${limit} OFFSET ${offset}",
            *params,
            query.after,
            query.limit + 1,
            query.offset,
        )
        if query.total is not None:
            total = query.total
        else:
            ((total,),) = await self._fetch(
                f"SELECT count(*) FROM devices d WHERE true{where}", *params
            )
        ids = [row[0] for row in rows]
        metrics = await self._fetch(
            "SELECT device_id, metric, unit, ts, value FROM metrics "
            "WHERE device_id = ANY($1::text[]) ORDER BY device_id, metric",
            ids,
        )
        attributes = await self._fetch(
            "SELECT device_id, name, value, ts FROM attributes "
            "WHERE device_id = ANY($1::text[]) ORDER BY device_id, name",
            ids,
        )
        return finish(device_records(rows, metrics, attributes), int(total), query)

    async def device(self, device_id: str) -> DeviceRecord | None:
        found = device_records(
            await self._fetch(
                "SELECT device_id, first_seen, last_seen, online FROM devices WHERE device_id = $1",
                device_id,
            ),
            await self._fetch(
                "SELECT device_id, metric, unit, ts, value FROM metrics WHERE device_id = $1 "
                "ORDER BY metric",
                device_id,
            ),
            await self._fetch(
                "SELECT device_id, name, value, ts FROM attributes WHERE device_id = $1 "
                "ORDER BY name",
                device_id,
            ),
        )
        return found[0] if found else None

    async def device_counts(self, stale_before: int) -> DeviceCounts:
        by_status = await self._fetch(
            "SELECT online, last_seen >= $1, count(*) FROM devices GROUP BY 1, 2", stale_before
        )
        by_group = await self._fetch(
            "SELECT value, count(*) FROM attributes WHERE name = 'group' GROUP BY value"
        )
        return counts_of(
            [(bool(o), bool(f), int(n)) for o, f, n in by_status],
            {group: int(count) for group, count in by_group},
        )

    async def enroll(self, devices: Sequence[tuple[str, str]]) -> None:
        if not devices:
            return
        ids = [d for d, _ in devices]
        grouped = [(d, g) for d, g in devices if g]
        try:
            async with self._writer.acquire() as db, db.transaction():
                await db.execute(
                    "INSERT INTO devices(device_id, first_seen, last_seen) "
                    "SELECT d, 0, 0 FROM unnest($1::text[]) AS k(d) "
                    "ON CONFLICT (device_id) DO NOTHING",
                    sorted(ids),
                )
                await db.execute(
                    "INSERT INTO attributes(device_id, name, value, ts) "
                    "SELECT d, 'group', g, 0 FROM unnest($1::text[], $2::text[]) AS k(d, g) "
                    "ON CONFLICT (device_id, name) DO UPDATE SET value = excluded.value "
                    "WHERE attributes.value IS DISTINCT FROM excluded.value",
                    [d for d, _ in sorted(grouped)],
                    [g for _, g in sorted(grouped)],
                )
        except DOWN as exc:
            raise StoreError("enroll", str(exc)) from exc

    async def rejections(self, limit: int) -> list[Rejection]:
        rows = await self._fetch(
            "SELECT source, device_id, reason, detail, received_ms, excerpt FROM rejections "
            "ORDER BY id DESC LIMIT $1",
            limit,
        )
        return [
            Rejection(Source(s), d, RejectReason(r), detail, t, excerpt)
            for s, d, r, detail, t, excerpt in rows
        ]

    async def rejection_counts(self) -> dict[str, int]:
        rows = await self._fetch("SELECT reason, count(*) FROM rejections GROUP BY reason")
        return {reason: int(count) for reason, count in rows}

    async def commands(self, device_id: str | None, limit: int) -> list[CommandRecord]:
        if device_id:
            rows = await self._fetch(
                "SELECT id, device_id, name, args, link, sent_ms, done_ms, outcome, reply "
                "FROM commands WHERE device_id = $1 ORDER BY sent_ms DESC LIMIT $2",
                device_id,
                limit,
            )
        else:
            rows = await self._fetch(
                "SELECT id, device_id, name, args, link, sent_ms, done_ms, outcome, reply "
                "FROM commands ORDER BY sent_ms DESC LIMIT $1",
                limit,
            )
        return [CommandRecord(*row) for row in rows]

    # -- connections ----------------------------------------------------------

    @property
    def _writer(self) -> asyncpg.Pool:
        return _opened(self._writes)

    @property
    def _reader(self) -> asyncpg.Pool:
        return _opened(self._reads)

    async def _fetch(self, sql: str, *params: Any) -> list[Any]:
        try:
            return list(await self._reader.fetch(sql, *params))
        except DOWN as exc:
            raise StoreError("query", str(exc)) from exc


# -- the write transaction's steps ----------------------------------------------


async def upsert_devices(db: Db, batch: WriteBatch) -> list[PresenceChange]:
    """Devices heard from, their presence, and a row for every device a
    reading names; in device id order (see the module's docstring). The
    presence changes applied (`apply_presence`)."""
    if batch.seen:
        seen = sorted(batch.seen.items())
        await db.execute(
            "INSERT INTO devices(device_id, first_seen, last_seen) "
            "SELECT d, t, t FROM unnest($1::text[], $2::bigint[]) AS k(d, t) "
            "ON CONFLICT (device_id) DO UPDATE SET "
            "last_seen = greatest(devices.last_seen, excluded.last_seen), first_seen = "
            "CASE WHEN devices.first_seen = 0 THEN excluded.first_seen ELSE devices.first_seen END",
            [d for d, _ in seen],
            [t for _, t in seen],
        )
    unseen: dict[str, int] = {}
    for p in batch.readings:
        if p.device_id not in batch.seen and p.device_id not in unseen:
            unseen[p.device_id] = p.ts
    if unseen:
        ordered = sorted(unseen.items())
        await db.execute(
            "INSERT INTO devices(device_id, first_seen, last_seen) "
            "SELECT d, t, t FROM unnest($1::text[], $2::bigint[]) AS k(d, t) "
            "ON CONFLICT (device_id) DO UPDATE SET first_seen = excluded.first_seen, "
            "last_seen = greatest(devices.last_seen, excluded.last_seen) "
            "WHERE devices.first_seen = 0",
            [d for d, _ in ordered],
            [t for _, t in ordered],
        )
    return await apply_presence(db, batch.presence)


async def apply_presence(db: Db, changes: Sequence[PresenceChange]) -> list[PresenceChange]:
    """Apply the changes that change the cluster's view, in order, and return
    them (the others are not logged). A device already online does not come
    online again. A device goes offline only if no hub has heard it since
    the change's `last_seen`: under a shared subscription every hub hears
    only some of a device's messages, and a hub whose share went quiet
    would otherwise take offline a device that another hub still hears; the
    hub that heard it last takes it offline when it falls silent."""
    if not changes:
        return []
    first: dict[str, int] = {}
    for change in changes:
        first.setdefault(change.device_id, change.last_seen)
    names = sorted(first)
    await db.execute(
        "INSERT INTO devices(device_id, first_seen, last_seen) "
        "SELECT d, t, t FROM unnest($1::text[], $2::bigint[]) AS k(d, t) "
        "ON CONFLICT (device_id) DO UPDATE SET first_seen = excluded.first_seen "
        "WHERE devices.first_seen = 0",
        names,
        [first[d] for d in names],
    )
    rows = await db.fetch(
        "SELECT device_id, online, last_seen FROM devices WHERE device_id = ANY($1::text[]) "
        "ORDER BY device_id FOR UPDATE",
        names,
    )
    state: dict[str, tuple[bool, int]] = {d: (bool(o), int(t)) for d, o, t in rows}
    applied: list[PresenceChange] = []
    for change in changes:
        online, last_seen = state[change.device_id]
        if change.online:
            if not online:
                applied.append(change)
            state[change.device_id] = (True, max(last_seen, change.last_seen))
        elif online and last_seen <= change.last_seen:
            applied.append(change)
            state[change.device_id] = (False, max(last_seen, change.last_seen))
    await db.execute(
        "UPDATE devices SET online = k.o, last_seen = k.t "
        "FROM unnest($1::text[], $2::boolean[], $3::bigint[]) AS k(d, o, t) "
        "WHERE devices.device_id = k.d",
        names,
        [state[d][0] for d in names],
        [state[d][1] for d in names],
    )
    return applied


async def upsert_latest(
    db: Db,
    readings: Sequence[PendingReading],
    attributes: Sequence[Attribute],
) -> None:
    """The newest value of each metric and attribute, by timestamp: another
    hub may hold a device's newer message. A repeated reading changes
    nothing (its timestamp is not newer), so this runs before the seqs are
    taken."""
    rows = newest(readings, lambda r: (r.device_id, r.metric))
    if rows:
        await db.execute(
            "INSERT INTO metrics(device_id, metric, unit, ts, value) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], "
            "$5::float8[]) "
            "ON CONFLICT (device_id, metric) DO UPDATE SET unit = excluded.unit, "
            "ts = excluded.ts, value = excluded.value WHERE excluded.ts >= metrics.ts",
            [r.device_id for r in rows],
            [r.metric for r in rows],
            [r.unit for r in rows],
            [r.ts for r in rows],
            [r.value for r in rows],
        )
    named_rows = newest(attributes, lambda a: (a.device_id, a.name))
    if named_rows:
        await db.execute(
            "INSERT INTO attributes(device_id, name, value, ts) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) "
            "ON CONFLICT (device_id, name) DO UPDATE SET value = excluded.value, "
            "ts = excluded.ts WHERE excluded.ts >= attributes.ts",
            [a.device_id for a in named_rows],
            [a.name for a in named_rows],
            [a.value for a in named_rows],
            [a.ts for a in named_rows],
        )


def newest(items: Iterable[Stamped], key: Callable[[Stamped], tuple[str, str]]) -> list[Stamped]:
    """The item with the newest ts (the later one on a tie) for each key, in
    key order (the order rows are locked in, see the module's docstring)."""
    found: dict[tuple[str, str], Stamped] = {}
    for item in items:
        k = key(item)
        if k not in found or item.ts >= found[k].ts:
            found[k] = item
    return [found[k] for k in sorted(found)]


async def insert_rejections(db: Db, rejections: Sequence[Rejection]) -> None:
    if not rejections:
        return
    await db.executemany(
        "INSERT INTO rejections(received_ms, source, device_id, reason, detail, excerpt) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        [
            (r.received_ms, str(r.source), r.device_id, str(r.reason), r.detail, r.excerpt)
            for r in rejections
        ],
    )
    await db.execute(
        "DELETE FROM rejections WHERE id <= (SELECT max(id) FROM rejections) - $1",
        REJECTIONS_KEPT,
    )


async def create_series(db: Db, keys: list[SeriesKey]) -> list[Any]:
    """Create the series `keys` where missing, in key order; (device_id,
    metric, unit, devices.id, series.id) of each. A series another hub
    creates at the same time is found by the SELECT, a statement of its own
    and so a snapshot of its own."""
    columns = [list(column) for column in zip(*sorted(keys), strict=True)]
    await db.execute(
        "INSERT INTO series(device, device_id, metric, unit) "
        "SELECT d.id, k.device_id, k.metric, k.unit "
        "FROM unnest($1::text[], $2::text[], $3::text[]) AS k(device_id, metric, unit) "
        "JOIN devices d USING (device_id) ORDER BY 2, 3, 4 ON CONFLICT DO NOTHING",
        *columns,
    )
    return list(
        await db.fetch(
            "SELECT s.device_id, s.metric, s.unit, s.device, s.id FROM series s "
            "JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(device_id, metric, unit) "
            "USING (device_id, metric, unit)",
            *columns,
        )
    )


async def insert_readings(
    db: Db,
    pending: Sequence[PendingReading],
    numbers: dict[SeriesKey, SeriesIds],
    first: int,
) -> WriteOutcome:
    """Insert with seqs from `first`; a repeat of a stored (device, device
    seq, series) is skipped and its seq stays unused."""
    if not pending:
        return WriteOutcome((), ())
    ids = [numbers[(p.device_id, p.metric, p.unit or "")] for p in pending]
    stored = await db.fetch(
        "INSERT INTO samples(seq, device, series, ts, value, device_seq) "
        "SELECT * FROM unnest($1::bigint[], $2::int[], $3::int[], $4::bigint[], "
        "$5::float8[], $6::bigint[]) ON CONFLICT DO NOTHING RETURNING seq",
        list(range(first, first + len(pending))),
        [device for device, _ in ids],
        [series for _, series in ids],
        [p.ts for p in pending],
        [p.value for p in pending],
        [p.device_seq for p in pending],
    )
    kept = {row[0] for row in stored}
    readings = tuple(
        Reading(seq, p.device_id, p.metric, p.ts, p.value, p.unit)
        for seq, p in enumerate(pending, start=first)
        if seq in kept
    )
    return WriteOutcome(readings, tuple(seq in kept for seq in range(first, first + len(pending))))


# -- the database -----------------------------------------------------------------


async def create_database(url: str) -> None:
    """Create the database `url` names if it does not exist (its owner's
    default database, `postgres`, must be reachable)."""
    try:
        connection = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        parts = urlsplit(url)
        name = parts.path.lstrip("/")
        server = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
        try:
            await server.execute(f'CREATE DATABASE "{name.replace(chr(34), chr(34) * 2)}"')
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            pass  # another hub created it meanwhile (the second, when at the same moment)
        finally:
            await server.close()
        log.info("created PostgreSQL database %s", name)
        return
    await connection.close()


async def migrate(db: Db) -> None:
    """Run the migrations not yet run, one hub at a time, and name the epoch."""
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        version = 0
        if await db.fetchval("SELECT to_regclass('meta') IS NOT NULL"):
            version = int(await db.fetchval("SELECT value FROM meta WHERE key = 'schema'") or 0)
        if version > len(MIGRATIONS):
            raise StoreError(
                "open", f"schema version {version} is newer than this hub ({len(MIGRATIONS)})"
            )
        for script in MIGRATIONS[version:]:
            await db.execute(script)
        await db.execute(
            "INSERT INTO meta(key, value) VALUES ('schema', $1) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            str(len(MIGRATIONS)),
        )
        await db.execute(
            "INSERT INTO meta(key, value) VALUES ('epoch', $1) ON CONFLICT (key) DO NOTHING",
            secrets.token_hex(8),
        )


# The devices a search matches, each column through its trigram index.
_MATCHES = (
    "SELECT device_id FROM devices WHERE device_id ILIKE {p} "
    "UNION ALL SELECT device_id FROM metrics WHERE metric ILIKE {p} "
    "UNION ALL SELECT device_id FROM attributes WHERE value ILIKE {p}"
)


def _page_filters(query: DeviceQuery) -> tuple[str, list[Any]]:
    """The WHERE conditions of a device page (after `WHERE ...`), and their
    parameters ($1 on): each filter served by an index (schema 2)."""
    sql = ""
    params: list[Any] = []

    def mark(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    if query.status == "offline":
        sql += " AND NOT d.online"
    elif query.status == "online":
        sql += f" AND d.online AND d.last_seen >= {mark(query.stale_before)}"
    elif query.status == "stale":
        sql += f" AND d.online AND d.last_seen < {mark(query.stale_before)}"
    if query.group:
        sql += (
            " AND d.device_id IN (SELECT device_id FROM attributes"
            f" WHERE name = 'group' AND value = {mark(query.group)})"
        )
    if query.q:
        like = mark(like_pattern(query.q))
        sql += f" AND d.device_id IN ({_MATCHES.format(p=like)})"
    return sql, params


def redacted(url: str) -> str:
    """`url` without its password, for logs and /readyz."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _seq_range(seq: int, upto: int, device_ids: Collection[str] | None) -> tuple[str, list[Any]]:
    if device_ids is None:
        return "seq > $1 AND seq <= $2", [seq, upto]
    return (
        "seq > $1 AND seq <= $2 AND device IN "
        "(SELECT id FROM devices WHERE device_id = ANY($3::text[]))",
        [seq, upto, list(device_ids)],
    )


def _opened(pool: asyncpg.Pool | None) -> asyncpg.Pool:
    if pool is None:
        raise StoreClosed("use")
    return pool


def _payload_to(callback: Callable[[str], None]) -> Callable[[Any, int, str, object], None]:
    """asyncpg's listener signature (connection, pid, channel, payload) for a
    callback that takes the payload."""

    def listener(connection: Any, pid: int, channel: str, payload: object) -> None:
        callback(str(payload))

    return listener
