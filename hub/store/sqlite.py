"""The SQLite store, on aiosqlite.

One transaction per batch (group commit, done by `hub.writer`), WAL journal,
`synchronous` from config. `seq` is the readings table's INTEGER PRIMARY KEY
with AUTOINCREMENT, so SQLite never hands a seq out twice, even after the
newest rows are deleted. aiosqlite pays a thread hop per call, so every call
here works on a whole batch.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from collections.abc import Collection, Iterable
from itertools import chain
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from hub.errors import StoreError
from hub.models import (
    Attribute,
    Bucket,
    CommandRecord,
    DeviceRecord,
    MetricSummary,
    PendingReading,
    Reading,
    Rejection,
    RejectReason,
    Source,
    WriteBatch,
    WriteOutcome,
)
from hub.store.checkpoints import Checkpoints, Result, catch_up
from hub.store.migrations import MIGRATIONS

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 1.0  # seconds between passive checkpoints
WAL_TARGET = 16 * 1024 * 1024  # bytes: the WAL file is cut back to this and starts over past it

REJECTIONS_KEPT = 10_000
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
        self._purged_through = 0
        self._epoch = ""
        # The seq allocator's position (sqlite_sequence): every seq up to it is
        # either stored or will never be. Duplicates that INSERT OR IGNORE
        # skipped still consumed a number, so seqs can have holes.
        self._head = 0

    @property
    def epoch(self) -> str:
        return self._epoch

    @property
    def head(self) -> int:
        return self._head

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("use", "the store is not open")
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
            await self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            await self._db.execute("PRAGMA foreign_keys=OFF")
            # Checkpoints run on a connection of their own (below), not in
            # whichever commit happens to cross SQLite's threshold; once the
            # WAL starts over, its file is cut back to the target.
            await self._db.execute("PRAGMA wal_autocheckpoint=0")
            await self._db.execute(f"PRAGMA journal_size_limit={self.checkpoints.target}")
            await self._migrate()
            self._epoch = await self._meta_epoch()
            self._head = await self._sequence()
            self._purged_through = int(await self._meta("purged_through") or 0)
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            await self._reader.execute("PRAGMA query_only=ON")
            (page_size,) = (await self._fetch_raw("PRAGMA page_size"))[0]
            await self.checkpoints.open(int(page_size))
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
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            # executescript commits first, so each migration is its own transaction.
            await self.db.executescript(
                f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;"
            )

    async def _sequence(self) -> int:
        rows = await self._fetch_raw("SELECT seq FROM sqlite_sequence WHERE name = 'readings'")
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
        # The whole transaction runs in one call on the connection's thread:
        # each aiosqlite call is a thread hop that has to win the GIL back
        # from a busy event loop, and a commit made of six hops is six waits.
        checkpoints = self.checkpoints
        try:
            outcome: WriteOutcome
            if checkpoints.catch_up_due():
                async with checkpoints.catching_up():
                    outcome, head, checkpoint = await self.db._execute(  # type: ignore[no-untyped-call]
                        self._transaction, batch, self._head, True
                    )
                checkpoints.observe(checkpoint)
            else:
                outcome, head, _ = await self.db._execute(  # type: ignore[no-untyped-call]
                    self._transaction, batch, self._head, False
                )
        except sqlite3.Error as exc:
            raise StoreError("write", str(exc)) from exc
        self._head = head
        checkpoints.after_commit()
        return outcome

    def _transaction(
        self, batch: WriteBatch, head: int, catch_up_first: bool
    ) -> tuple[WriteOutcome, int, Result | sqlite3.Error | None]:
        """One write transaction, on the connection's own thread; first, when
        asked, the checkpoint that lets the WAL start over with it."""
        db: sqlite3.Connection = self.db._conn
        checkpoint = catch_up(db) if catch_up_first else None
        db.execute("BEGIN IMMEDIATE")
        try:
            outcome, head = _insert_readings(db, batch.readings, head)
            _upsert_devices(db, batch)
            _upsert_latest(db, outcome.readings, batch.attributes)
            _insert_rejections(db, batch.rejections)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return outcome, head, checkpoint

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

    # -- reading ------------------------------------------------------------

    async def readings(
        self, device_id: str, metric: str, start: int | None, end: int | None, limit: int
    ) -> list[Reading]:
        lower = start if start is not None else -(2**62)
        upper = end if end is not None else 2**62
        order = "ASC" if start is not None else "DESC"
        rows = await self._fetch(
            "SELECT seq, device_id, metric, ts, value, unit FROM readings "
            "WHERE device_id = ? AND metric = ? AND ts BETWEEN ? AND ? "
            f"ORDER BY ts {order}, seq {order} LIMIT ?",
            (device_id, metric, lower, upper, limit),
        )
        readings = [Reading(*row) for row in rows]
        return readings if start is not None else readings[::-1]

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
        lower = start if start is not None else -(2**62)
        upper = end if end is not None else 2**62
        order = "ASC" if start is not None else "DESC"
        rows = await self._fetch(
            "SELECT (ts / :b) * :b AS bucket, min(value), max(value), avg(value), count(*) "
            "FROM readings WHERE device_id = :d AND metric = :m AND ts BETWEEN :lo AND :hi "
            f"AND seq <= :s GROUP BY bucket ORDER BY bucket {order} LIMIT :limit",
            {
                "b": bucket_ms,
                "d": device_id,
                "m": metric,
                "lo": lower,
                "hi": upper,
                "s": 2**62 if through is None else through,
                "limit": limit,
            },
        )
        buckets = [Bucket(int(b), mn, mx, mean, int(n)) for b, mn, mx, mean, n in rows]
        return buckets if start is not None else buckets[::-1]

    async def readings_after(
        self, seq: int, upto: int, device_ids: Collection[str] | None, limit: int
    ) -> list[Reading]:
        where, params = _seq_range(seq, upto, device_ids)
        rows = await self._fetch(
            f"SELECT seq, device_id, metric, ts, value, unit FROM readings WHERE {where} "
            "ORDER BY seq LIMIT ?",
            (*params, limit),
        )
        return [Reading(*row) for row in rows]

    async def count_after(
        self, seq: int, upto: int, device_ids: Collection[str] | None, limit: int
    ) -> int:
        where, params = _seq_range(seq, upto, device_ids)
        rows = await self._fetch(
            f"SELECT count(*) FROM (SELECT 1 FROM readings WHERE {where} LIMIT ?)",
            (*params, limit),
        )
        return int(rows[0][0])

    async def purge(self, before_ts: int, limit: int) -> int:
        """Delete the oldest readings, in seq order, while their ts is before
        `before_ts`, at most `limit` of them. Deleting a prefix of seqs keeps
        one fact simple for replay: everything up to `purged_through` is gone."""
        rows = await self._fetch_raw(
            "SELECT seq, ts FROM readings WHERE seq > ? ORDER BY seq LIMIT ?",
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
        try:
            await db.execute("BEGIN IMMEDIATE")
            cursor = await db.execute("DELETE FROM readings WHERE seq <= ?", (last,))
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
        self._purged_through = last
        return int(deleted)

    async def metric_unit(self, device_id: str, metric: str) -> str | None:
        rows = await self._fetch(
            "SELECT unit FROM metrics WHERE device_id = ? AND metric = ?", (device_id, metric)
        )
        return rows[0][0] if rows else None

    async def devices(self) -> list[DeviceRecord]:
        devices = await self._fetch(
            "SELECT device_id, first_seen, last_seen, online FROM devices ORDER BY device_id", ()
        )
        metrics: dict[str, list[MetricSummary]] = {}
        for device_id, metric, unit, ts, value in await self._fetch(
            "SELECT device_id, metric, unit, ts, value FROM metrics ORDER BY device_id, metric", ()
        ):
            metrics.setdefault(device_id, []).append(MetricSummary(metric, unit, ts, value))
        attributes: dict[str, list[Attribute]] = {}
        for device_id, name, value, ts in await self._fetch(
            "SELECT device_id, name, value, ts FROM attributes ORDER BY device_id, name", ()
        ):
            attributes.setdefault(device_id, []).append(Attribute(device_id, name, value, ts))
        return [
            DeviceRecord(
                device_id,
                first_seen,
                last_seen,
                bool(online),
                tuple(metrics.get(device_id, ())),
                tuple(attributes.get(device_id, ())),
            )
            for device_id, first_seen, last_seen, online in devices
        ]

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

    async def commands(self, device_id: str | None, limit: int) -> list[CommandRecord]:
        where, params = ("WHERE device_id = ?", [device_id]) if device_id else ("", [])
        rows = await self._fetch(
            "SELECT id, device_id, name, args, link, sent_ms, done_ms, outcome, reply "
            f"FROM commands {where} ORDER BY sent_ms DESC LIMIT ?",
            (*params, limit),
        )
        return [CommandRecord(*row) for row in rows]

    async def _fetch_raw(self, sql: str, params: Any = ()) -> list[Any]:
        return list(await self.db.execute_fetchall(sql, params))

    async def _fetch(self, sql: str, params: Any) -> list[Any]:
        if self._reader is None:
            raise StoreError("query", "the store is not open")
        try:
            return list(await self._reader.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise StoreError("query", str(exc)) from exc


def _match_stored(pending: tuple[PendingReading, ...], rows: Iterable[Any]) -> WriteOutcome:
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


def _seq_range(seq: int, upto: int, device_ids: Collection[str] | None) -> tuple[str, list[Any]]:
    if device_ids is None:
        return "seq > ? AND seq <= ?", [seq, upto]
    marks = ",".join("?" * len(device_ids))
    return f"seq > ? AND seq <= ? AND device_id IN ({marks})", [seq, upto, *device_ids]


# -- the write transaction's steps (run on the writer connection's thread) -----

# Each step of a batch goes to SQLite in as few statements as it can, because
# the writer thread takes the GIL back after each one, and beside a busy event
# loop each of those waits its turn. `executemany` is a statement per row:
# 3,000 rows took 8.7-11.7 s that way beside a Python thread that never
# sleeps, and 62-65 ms as one statement (docs/performance.md). So the small
# steps go as one JSON array read by json_each, and readings in statements of
# 1,024 rows of bound values, the rest through json_each: SQLite binds values
# faster than it parses JSON. 3,000 readings took 7.1 ms against 9.8 ms as one
# JSON array, and 33.5 ms against 24.8-29.4 ms beside the never-sleeping
# thread. Every value arrives as sent: orjson writes the shortest text that
# reads back as the same double, and SQLite reads it so (checked on 600,000
# values, random bit patterns among them). Statements and json_each keep the
# batch's order, so readings are numbered in it (tests/test_store.py checks
# both). In an upsert, `WHERE true` lets SQLite tell the SELECT's end from the
# ON CONFLICT clause.
VALUES_ROWS = 1024  # readings per statement of bound values
INSERT_VALUES = (
    "INSERT OR IGNORE INTO readings(device_id, metric, ts, value, unit, device_seq) VALUES "
    + ", ".join(["(?, ?, ?, ?, ?, ?)"] * VALUES_ROWS)
)
INSERT_READINGS = (
    "INSERT OR IGNORE INTO readings(device_id, metric, ts, value, unit, device_seq) "
    "SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 "
    "FROM json_each(?)"
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
    "ON CONFLICT(device_id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)"
)


def _insert_readings(
    db: sqlite3.Connection, pending: tuple[PendingReading, ...], head: int
) -> tuple[WriteOutcome, int]:
    """Insert, and return what was stored with the allocator's new position."""
    if not pending:
        return WriteOutcome((), ()), head
    inserted, at = 0, 0
    while len(pending) - at >= VALUES_ROWS:
        # PendingReading's fields are the columns, in order.
        values = list(chain.from_iterable(pending[at : at + VALUES_ROWS]))
        inserted += db.execute(INSERT_VALUES, values).rowcount
        at += VALUES_ROWS
    if at < len(pending):
        # orjson takes plain tuples, not named ones.
        batch = orjson.dumps(list(map(tuple, pending[at:])))
        inserted += db.execute(INSERT_READINGS, (batch,)).rowcount
    if inserted == len(pending):
        # No duplicates: AUTOINCREMENT with a single writer numbers them in order.
        readings = tuple(
            Reading(head + i, p.device_id, p.metric, p.ts, p.value, p.unit)
            for i, p in enumerate(pending, start=1)
        )
        return WriteOutcome(readings, (True,) * len(pending)), head + len(pending)
    rows = db.execute(
        "SELECT seq, device_id, metric, device_seq FROM readings WHERE seq > ? ORDER BY seq",
        (head,),
    ).fetchall()
    (sequence,) = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'readings'").fetchone()
    return _match_stored(pending, rows), int(sequence)


def _upsert_devices(db: sqlite3.Connection, batch: WriteBatch) -> None:
    if batch.seen:
        db.execute(UPSERT_SEEN, (orjson.dumps(list(batch.seen.items())),))
    if batch.presence:
        db.executemany(
            "INSERT INTO devices(device_id, first_seen, last_seen, online) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(device_id) DO UPDATE SET online = excluded.online, "
            "last_seen = max(last_seen, excluded.last_seen)",
            [(p.device_id, p.last_seen, p.last_seen, int(p.online)) for p in batch.presence],
        )


def _upsert_latest(
    db: sqlite3.Connection, readings: Iterable[Reading], attributes: tuple[Attribute, ...]
) -> None:
    latest: dict[tuple[str, str], Reading] = {}
    for reading in readings:
        key = (reading.device_id, reading.metric)
        if key not in latest or reading.ts >= latest[key].ts:
            latest[key] = reading
    if latest:
        values = [(r.device_id, r.metric, r.unit, r.ts, r.value) for r in latest.values()]
        db.execute(UPSERT_LATEST, (orjson.dumps(values),))
    if attributes:
        named = [(a.device_id, a.name, a.value, a.ts) for a in attributes]
        db.execute(UPSERT_ATTRIBUTES, (orjson.dumps(named),))


def _insert_rejections(db: sqlite3.Connection, rejections: tuple[Rejection, ...]) -> None:
    if not rejections:
        return
    db.executemany(
        "INSERT INTO rejections(received_ms, source, device_id, reason, detail, excerpt) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (r.received_ms, str(r.source), r.device_id, str(r.reason), r.detail, r.excerpt)
            for r in rejections
        ],
    )
    # The dead-letter table is a window on recent trouble, not an archive.
    db.execute(
        "DELETE FROM rejections WHERE id <= (SELECT max(id) FROM rejections) - ?",
        (REJECTIONS_KEPT,),
    )
