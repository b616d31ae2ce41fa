"""The SQLite store, on aiosqlite.

One transaction per batch (group commit, done by `hub.writer`; its steps
are `hub.store.transaction`), WAL journal (its checkpoints:
`hub.store.checkpoints`), `synchronous` from config. `seq` is the samples
table's INTEGER PRIMARY KEY with AUTOINCREMENT, so SQLite never hands a seq
out twice, even after the newest rows are deleted. Only aiosqlite's public
API is used; it pays a thread hop per call, so every call here works on a
whole batch. The writer's connection takes one transaction at a time
(`_writing`): a write, a retention step, or a command's record.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
from collections.abc import Collection, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from hub.errors import StoreClosed, StoreError
from hub.models import (
    Bucket,
    CommandRecord,
    DeviceRecord,
    KnownDevice,
    Reading,
    Rejection,
    RejectReason,
    Source,
    WriteBatch,
    WriteOutcome,
)
from hub.store import transaction
from hub.store.checkpoints import Checkpoints, WalMeter, passive
from hub.store.device_pages import (
    SEARCH_MIN,
    DeviceCounts,
    DevicePage,
    DeviceQuery,
    counts_of,
    finish,
    like_pattern,
    search_phrase,
)
from hub.store.feed import Committed, Feed, Follower
from hub.store.migrations import MIGRATIONS
from hub.store.reads import FAR, buckets_of, device_records, oldest_first, window

log = logging.getLogger(__name__)


CHECKPOINT_EVERY = 1.0  # seconds between passive checkpoints
WAL_TARGET = 16 * 1024 * 1024  # bytes: the WAL file is cut back to this and starts over past it

PAGE_SIZE = 1024  # bytes, for a new database file


class SqliteStore:
    def __init__(
        self,
        path: str | Path,
        synchronous: str = "normal",
        *,
        wal_target: int = WAL_TARGET,
        checkpoint_every: float = CHECKPOINT_EVERY,
    ):
        self.path = Path(path)
        self.synchronous = synchronous
        self._db: aiosqlite.Connection | None = None
        # Queries (history, replay) go through a second connection with its
        # own thread: in WAL mode they read a snapshot while the writer
        # commits, so a long replay read never delays a commit.
        self._reader: aiosqlite.Connection | None = None
        # A third connection copies the WAL back into the database file beside
        # the writer, so that commits do not wait for it (hub.store.checkpoints).
        self.checkpoints = Checkpoints(self.path, target=wal_target, interval=checkpoint_every)
        # What every commit writes to the WAL (hub_wal_written_bytes_total).
        self.wal = WalMeter(self.path)
        self._purged_through = 0
        self._epoch = ""
        # The seq allocator's position (sqlite_sequence): every seq up to it is
        # either stored or will never be. Duplicates that INSERT OR IGNORE
        # skipped still consumed a number, so seqs can have holes.
        self._head = 0
        # Series numbers the writer met lately (only its thread touches them).
        self._series = transaction.SeriesNumbers()
        # ... and the names of the series the reader met lately.
        self._names = transaction.SeriesNames()
        self._writing = asyncio.Lock()  # one transaction at a time on the writer's connection
        # What each commit stored, for the live path; woken right after it.
        self.feed = Feed()

    @property
    def epoch(self) -> str:
        return self._epoch

    @property
    def head(self) -> int:
        return self._head

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreClosed("use")
        return self._db

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN and COMMIT ourselves.
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            # A commit writes every page it touches to the WAL whole, and a
            # few readings touch a page in each index per device or series:
            # 1 KiB pages write less than half the WAL per reading that 4 KiB
            # pages did (docs/performance.md). Only a new file takes it.
            await self._fetch_raw(f"PRAGMA page_size={PAGE_SIZE}")
            await self._fetch_raw("PRAGMA journal_mode=WAL")
            await self._fetch_raw(f"PRAGMA synchronous={self.synchronous.upper()}")
            await self._fetch_raw("PRAGMA foreign_keys=OFF")
            # Checkpoints run on a connection of their own (below), not in
            # whichever commit happens to cross SQLite's threshold; once the
            # WAL starts over, its file is cut back to the target.
            await self._fetch_raw("PRAGMA wal_autocheckpoint=0")
            await self._fetch_raw(f"PRAGMA journal_size_limit={self.checkpoints.target}")
            await self._migrate()
            self._epoch = await self._meta_epoch()
            self._head = await self._sequence()
            self.feed = Feed(self._head)
            self._purged_through = int(await self._meta("purged_through") or 0)
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            await self._reader.execute_fetchall("PRAGMA query_only=ON")
            (page_size,) = (await self._fetch_raw("PRAGMA page_size"))[0]
            self.wal.open(int(page_size))
            await self.checkpoints.open()
        except (sqlite3.Error, OSError) as exc:
            await self.close()
            raise StoreError("open", f"{self.path}: {exc}") from exc
        except BaseException:
            # aiosqlite's worker thread is not a daemon: an unclosed connection
            # would keep the process alive at exit.
            await self.close()
            raise

    async def close(self) -> None:
        await self.checkpoints.close()
        self.wal.close()
        for name in ("_reader", "_db"):
            connection = getattr(self, name)
            if connection is not None:
                setattr(self, name, None)
                await connection.close()

    @property
    def purged_through(self) -> int:
        return self._purged_through

    async def _migrate(self) -> None:
        rows = await self._fetch_raw("PRAGMA user_version")
        version = int(rows[0][0])
        if version > len(MIGRATIONS):
            raise StoreError(
                "open", f"schema version {version} is newer than this hub ({len(MIGRATIONS)})"
            )
        if version == len(MIGRATIONS):
            return
        if version > 0:
            # Migrations may rewrite every reading. In WAL mode a transaction
            # that large needs its whole size again in the WAL; a rollback
            # journal keeps only the pages it overwrites.
            log.info("store %s: migrating schema %d to %d", self.path, version, len(MIGRATIONS))
            await self._fetch_raw("PRAGMA journal_mode=DELETE")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            # executescript commits first, so each migration is its own transaction.
            await self.db.executescript(
                f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
            )
        await self._fetch_raw("PRAGMA journal_mode=WAL")

    async def _sequence(self) -> int:
        rows = await self._fetch_raw("SELECT seq FROM sqlite_sequence WHERE name = 'samples'")
        return int(rows[0][0]) if rows else 0

    async def _meta(self, key: str) -> str | None:
        rows = await self._fetch_raw("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    async def _meta_epoch(self) -> str:
        epoch = await self._meta("epoch")
        if epoch is not None:
            return epoch
        epoch = secrets.token_hex(8)
        await self.db.execute("INSERT INTO meta(key, value) VALUES ('epoch', ?)", (epoch,))
        return epoch

    # -- writing ------------------------------------------------------------

    async def write(self, batch: WriteBatch) -> WriteOutcome:
        checkpoints = self.checkpoints
        async with self._writing:
            after = self._head
            try:
                if checkpoints.catch_up_due():
                    # the rest of the log copied first, with no pass beside it,
                    # so that this transaction can start the log over
                    async with checkpoints.catching_up():
                        checkpoints.observe(await passive(self.db))
                        outcome = await self._transaction(batch)
                else:
                    outcome = await self._transaction(batch)
            except sqlite3.Error as exc:
                raise StoreError("write", str(exc)) from exc
            self.feed.committed(Committed(after, self._head, outcome.readings, batch.presence))
        checkpoints.after_commit()
        return outcome

    async def _transaction(self, batch: WriteBatch) -> WriteOutcome:
        """One write transaction, through aiosqlite's public API: a thread hop
        per statement (5 for a batch of readings from known series)."""
        db = self.db
        await db.execute("BEGIN IMMEDIATE")
        try:
            outcome, head = await transaction.write(db, self._series, batch, self._head)
            await db.execute("COMMIT")
        except BaseException:
            self._series.rolled_back()
            # Also when cancelled before BEGIN ran: the ROLLBACK queues behind it.
            with suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
            raise
        self.wal.count()
        self._series.committed()
        self._head = head
        return outcome

    def db_bytes(self) -> int:
        """The size of the database file (without its WAL)."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    @property
    def failing(self) -> str | None:
        failing = self.checkpoints.failing
        return None if failing is None else f"checkpoints of the WAL fail: {failing}"

    def status(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "db_bytes": self.db_bytes(),
            "wal_bytes": self.checkpoints.wal_bytes(),
            "failing": self.failing,
        }

    def follow(self, after: int) -> Follower:
        return self.feed.follow(after, self._read_back)

    async def _read_back(self, after: int, upto: int, limit: int) -> list[Reading]:
        return await self.readings_after(after, upto, None, limit)

    # -- reading ------------------------------------------------------------

    async def readings(
        self, device_id: str, metric: str, start: int | None, end: int | None, limit: int
    ) -> list[Reading]:
        lower, upper, order = window(start, end)
        # One query per series (a metric sent in more than one unit has one
        # each): across series, ORDER BY ts would sort the whole range before
        # the LIMIT, where within one the index gives the order.
        found: list[Reading] = []
        for series, unit in await self._series_of(device_id, metric):
            rows = await self._fetch(
                "SELECT seq, ts, value FROM samples WHERE series = ? AND ts BETWEEN ? AND ? "
                f"ORDER BY ts {order}, seq {order} LIMIT ?",
                (series, lower, upper, limit),
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
            "SELECT (ts / ?) * ? AS bucket, min(value), max(value), avg(value), count(*) "
            f"FROM samples WHERE series IN ({','.join('?' * len(series))}) "
            "AND ts BETWEEN ? AND ? AND seq <= ? "
            f"GROUP BY bucket ORDER BY bucket {order} LIMIT ?",
            (
                bucket_ms,
                bucket_ms,
                *series,
                lower,
                upper,
                FAR if through is None else through,
                limit,
            ),
        )
        return buckets_of(rows, start)

    async def _series_of(self, device_id: str, metric: str) -> list[tuple[int, str | None]]:
        """The series (number, unit) of one metric of one device."""
        rows = await self._fetch(
            "SELECT id, nullif(unit, '') FROM series WHERE device_id = ? AND metric = ?",
            (device_id, metric),
        )
        return [(int(number), unit) for number, unit in rows]

    async def readings_after(
        self, seq: int, upto: int, device_ids: Collection[str] | None, limit: int
    ) -> list[Reading]:
        # The rows as stored, named from the reader's cache of series names:
        # a third of the time of joining `series` for every row (replay reads
        # a few series over and over).
        where, params = _seq_range(seq, upto, device_ids)
        rows = await self._fetch(
            f"SELECT r.seq, r.series, r.ts, r.value FROM samples r WHERE {where} "
            "ORDER BY r.seq LIMIT ?",
            (*params, limit),
        )
        names = await self._names.of({series for _, series, _, _ in rows}, self._series_names)
        return transaction.named(rows, names)

    async def _series_names(self, numbers: list[int]) -> list[Any]:
        return await self._fetch(transaction.SELECT_SERIES_NAMES, (orjson.dumps(numbers),))

    async def count_after(
        self, seq: int, upto: int, device_ids: Collection[str] | None, limit: int
    ) -> int:
        where, params = _seq_range(seq, upto, device_ids)
        rows = await self._fetch(
            f"SELECT count(*) FROM (SELECT 1 FROM samples r WHERE {where} LIMIT ?)",
            (*params, limit),
        )
        return int(rows[0][0])

    async def purge(self, before_ts: int, limit: int) -> int:
        """Delete the oldest readings, in seq order, while their ts is before
        `before_ts`, at most `limit` of them. Deleting a prefix of seqs keeps
        one fact simple for replay: everything up to `purged_through` is gone."""
        rows = await self._fetch_raw(
            "SELECT seq, ts FROM samples WHERE seq > ? ORDER BY seq LIMIT ?",
            (self._purged_through, limit),
        )
        last = self._purged_through
        for seq, ts in rows:
            if ts >= before_ts:
                break
            last = seq
        if last == self._purged_through:
            return 0
        db = self.db
        async with self._writing:
            try:
                await db.execute("BEGIN IMMEDIATE")
                cursor = await db.execute("DELETE FROM samples WHERE seq <= ?", (last,))
                deleted = cursor.rowcount
                await db.execute(
                    "INSERT INTO meta(key, value) VALUES ('purged_through', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (str(last),),
                )
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    await db.execute("ROLLBACK")
                raise StoreError("purge", str(exc)) from exc
            self.wal.count()
        self._purged_through = last
        return int(deleted)

    async def metric_unit(self, device_id: str, metric: str) -> str | None:
        rows = await self._fetch(
            "SELECT unit FROM metrics WHERE device_id = ? AND metric = ?", (device_id, metric)
        )
        return rows[0][0] if rows else None

    async def devices(self) -> list[DeviceRecord]:
        return device_records(
            await self._fetch(
                "SELECT device_id, first_seen, last_seen, online FROM devices ORDER BY device_id",
                (),
            ),
            await self._fetch(
                "SELECT device_id, metric, unit, ts, value FROM metrics ORDER BY device_id, metric",
                (),
            ),
            await self._fetch(
                "SELECT device_id, name, value, ts FROM attributes ORDER BY device_id, name", ()
            ),
        )

    async def known_devices(self) -> list[KnownDevice]:
        rows = await self._fetch(
            "SELECT d.device_id, d.online, d.last_seen, s.value, n.value FROM devices d "
            "LEFT JOIN attributes s ON s.device_id = d.device_id AND s.name = 'source' "
            "LEFT JOIN attributes n ON n.device_id = d.device_id AND n.name = 'name'",
            (),
        )
        return [
            KnownDevice(d, bool(online), last, source, name)
            for d, online, last, source, name in rows
        ]

    async def device_page(self, query: DeviceQuery) -> DevicePage:
        # A search's matches are gathered first, from its index: testing
        # each device in id order instead is faster when the first devices
        # match, but takes seconds when they do not ("sim-1" at 100,000:
        # 1.6-2.5 s), which the gathering never does (45 ms at worst here).
        indexed = len(query.q) >= SEARCH_MIN
        where, params = _page_filters(query)
        rows = await self._fetch(
            "SELECT device_id, first_seen, last_seen, online FROM devices d "
            f"WHERE d.device_id > :after{where} ORDER BY d.device_id LIMIT :limit OFFSET :offset",
            {**params, "after": query.after, "limit": query.limit + 1, "offset": query.offset},
        )
        if query.total is not None:
            total = query.total
        elif indexed and not (query.status or query.group):
            ((total,),) = await self._fetch(  # the search alone: count its devices
                "SELECT count(DISTINCT r.device_id) FROM device_search s "
                "JOIN search_rows r ON r.id = s.rowid WHERE device_search MATCH ?",
                (search_phrase(query.q),),
            )
        else:
            ((total,),) = await self._fetch(
                f"SELECT count(*) FROM devices d WHERE true{where}", params
            )
        ids = orjson.dumps([row[0] for row in rows]).decode()
        metrics = await self._fetch(
            "SELECT device_id, metric, unit, ts, value FROM metrics "
            "WHERE device_id IN (SELECT value FROM json_each(?)) ORDER BY device_id, metric",
            (ids,),
        )
        attributes = await self._fetch(
            "SELECT device_id, name, value, ts FROM attributes "
            "WHERE device_id IN (SELECT value FROM json_each(?)) ORDER BY device_id, name",
            (ids,),
        )
        return finish(device_records(rows, metrics, attributes), int(total), query)

    async def device(self, device_id: str) -> DeviceRecord | None:
        found = device_records(
            await self._fetch(
                "SELECT device_id, first_seen, last_seen, online FROM devices WHERE device_id = ?",
                (device_id,),
            ),
            await self._fetch(
                "SELECT device_id, metric, unit, ts, value FROM metrics WHERE device_id = ? "
                "ORDER BY metric",
                (device_id,),
            ),
            await self._fetch(
                "SELECT device_id, name, value, ts FROM attributes WHERE device_id = ? "
                "ORDER BY name",
                (device_id,),
            ),
        )
        return found[0] if found else None

    async def device_counts(self, stale_before: int) -> DeviceCounts:
        by_status = await self._fetch(
            "SELECT online, last_seen >= ?, count(*) FROM devices GROUP BY 1, 2", (stale_before,)
        )
        by_group = await self._fetch(
            "SELECT value, count(*) FROM attributes WHERE name = 'group' GROUP BY value", ()
        )
        return counts_of(
            [(bool(o), bool(f), int(n)) for o, f, n in by_status],
            {group: int(count) for group, count in by_group},
        )

    async def enroll(self, devices: Sequence[tuple[str, str]]) -> None:
        if not devices:
            return
        listed = orjson.dumps(list(devices)).decode()
        async with self._writing:
            try:
                await self.db.execute(transaction.ENROLL, (listed,))
                await self.db.execute(transaction.ENROLL_GROUPS, (listed,))
            except sqlite3.Error as exc:
                raise StoreError("enroll", str(exc)) from exc
            self.wal.count()

    async def rejections(self, limit: int) -> list[Rejection]:
        rows = await self._fetch(
            "SELECT source, device_id, reason, detail, received_ms, excerpt FROM rejections "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            Rejection(Source(s), d, RejectReason(r), detail, t, excerpt)
            for s, d, r, detail, t, excerpt in rows
        ]

    async def rejection_counts(self) -> dict[str, int]:
        rows = await self._fetch("SELECT reason, count(*) FROM rejections GROUP BY reason", ())
        return {reason: int(count) for reason, count in rows}

    async def record_command(self, record: CommandRecord) -> None:
        # Not through the writer's batches: commands are rare, unrelated to
        # seq, and one INSERT in autocommit mode is atomic on this connection.
        async with self._writing:
            await self._record_command(record)

    async def _record_command(self, record: CommandRecord) -> None:
        try:
            await self.db.execute(
                "INSERT OR REPLACE INTO commands(id, device_id, name, args, link, sent_ms, "
                "done_ms, outcome, reply) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.device_id,
                    record.name,
                    record.args,
                    record.link,
                    record.sent_ms,
                    record.done_ms,
                    record.outcome,
                    record.reply,
                ),
            )
        except sqlite3.Error as exc:
            raise StoreError("record command", str(exc)) from exc
        self.wal.count()

    async def commands(self, device_id: str | None, limit: int) -> list[CommandRecord]:
        where, params = ("WHERE device_id = ?", [device_id]) if device_id else ("", [])
        rows = await self._fetch(
            "SELECT id, device_id, name, args, link, sent_ms, done_ms, outcome, reply "
            f"FROM commands {where} ORDER BY sent_ms DESC LIMIT ?",
            (*params, limit),
        )
        return [CommandRecord(*row) for row in rows]

    async def _fetch_raw(self, sql: str, params: Any = ()) -> list[Any]:
        """A statement on the writer's connection, run to its end: a pragma's
        cursor left open would hold a statement that blocks DROP TABLE."""
        return list(await self.db.execute_fetchall(sql, params))

    async def _fetch(self, sql: str, params: Any) -> list[Any]:
        if self._reader is None:
            raise StoreClosed("query")
        try:
            return list(await self._reader.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise StoreError("query", str(exc)) from exc


def _seq_range(seq: int, upto: int, device_ids: Collection[str] | None) -> tuple[str, list[Any]]:
    if device_ids is None:
        return "r.seq > ? AND r.seq <= ?", [seq, upto]
    marks = ",".join("?" * len(device_ids))
    return (
        f"r.seq > ? AND r.seq <= ? AND r.device IN "
        f"(SELECT id FROM devices WHERE device_id IN ({marks}))",
        [seq, upto, *device_ids],
    )


def _page_filters(query: DeviceQuery) -> tuple[str, dict[str, Any]]:
    """The WHERE conditions of a device page (after `WHERE ...`), and their
    parameters: each filter served by an index (migration 4)."""
    sql = ""
    params: dict[str, Any] = {"stale_before": query.stale_before}
    if query.status == "offline":
        sql += " AND d.online = 0"
    elif query.status == "online":
        sql += " AND d.online = 1 AND d.last_seen >= :stale_before"
    elif query.status == "stale":
        sql += " AND d.online = 1 AND d.last_seen < :stale_before"
    if query.group:
        sql += (
            " AND d.device_id IN (SELECT device_id FROM attributes"
            " WHERE name = 'group' AND value = :group)"
        )
        params["group"] = query.group
    if query.q:
        if len(query.q) >= SEARCH_MIN:
            match = (
                "d.device_id IN (SELECT r.device_id FROM device_search s"
                " JOIN search_rows r ON r.id = s.rowid WHERE device_search MATCH :phrase)"
            )
            params["phrase"] = search_phrase(query.q)
        else:  # too short for trigrams: a scan
            match = (
                "d.device_id LIKE :like ESCAPE '\\' OR d.device_id IN"
                " (SELECT device_id FROM metrics WHERE metric LIKE :like ESCAPE '\\')"
                " OR d.device_id IN"
                " (SELECT device_id FROM attributes WHERE value LIKE :like ESCAPE '\\')"
            )
            params["like"] = like_pattern(query.q)
        sql += f" AND ({match})"
    return sql, params
