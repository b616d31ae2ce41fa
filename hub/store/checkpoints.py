"""WAL checkpoints for the SQLite store: off the commit path, and bounded.

SQLite appends every commit to the write-ahead log (WAL); a checkpoint copies
the log's pages back into the database file. The log starts over (the next
transaction writes it again from the top) only when a checkpoint has copied
all of it and no reader still uses it. A checkpoint that runs beside a busy
writer never gets all of it: whatever was committed while it copied is left
over, so the log never starts over and grows without end (issue 13: 25 GB in
7 minutes at 6,000 readings/s).

So the work is split. A connection of its own copies the bulk of the log
beside the writer (a passive checkpoint: it never blocks the writer or the
readers), every `interval`, and at once when the WAL file has grown past
`target` bytes. After such a pass the writer copies the little that was
committed meanwhile, on its own connection, just before its next
transaction: nothing can commit in between, so that copy is complete and the
transaction starts the log over. `journal_size_limit` then cuts the file
back to `target`. Should the file still pass `CEILING` times the target (a
pass that took long while commits went on), the writer waits for the pass
to end before it catches up: commits pause for that moment rather than the
log grow further. A reader still using the old log (a long history query)
delays the restart until it ends; the next commit tries again.

Every checkpoint reports how many frames the log holds since it last started
over, and the log can only start over right after a complete checkpoint (so
nothing is written between that checkpoint and the restart); the WAL file's
header counts the restarts. Adding up what each checkpoint reports counts
every frame written: `written_bytes`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger(__name__)

FRAME_HEADER = 24  # bytes before each page in the WAL file
CEILING = 3  # times the target: past it, commits wait for the checkpoint
PASSIVE = "PRAGMA wal_checkpoint(PASSIVE)"

Result = tuple[int, int, int]  # (busy, frames in the log, frames copied)


class Checkpoints:
    """Copies the WAL back into the database and keeps the WAL file near `target` bytes."""

    def __init__(self, path: Path, *, target: int, interval: float):
        self.path = path
        self.wal_path = Path(f"{path}-wal")
        self.target = target
        self.interval = interval
        self.page_size = 4096
        self.frames_written = 0
        self.restarts = 0
        self.failing: str | None = None
        self._frames = 0  # frames in the log at the last checkpoint
        self._generation: int | None = None  # the WAL header's restart count then
        self._catch_up = False
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._connection: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self, page_size: int) -> None:
        self.page_size = page_size
        self._connection = await aiosqlite.connect(self.path, isolation_level=None)
        self._task = asyncio.create_task(self._run(), name="checkpoints")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()

    @property
    def written_bytes(self) -> int:
        """Bytes appended to the WAL since the store opened."""
        return self.frames_written * (self.page_size + FRAME_HEADER)

    def wal_bytes(self) -> int:
        try:
            return self.wal_path.stat().st_size
        except FileNotFoundError:
            return 0

    # -- the writer's side ----------------------------------------------------

    def catch_up_due(self) -> bool:
        """Whether the writer should copy the rest of the log before its next
        transaction: a pass has just run and the log still wants to start
        over, or the log has passed its ceiling (then the writer waits for a
        running pass)."""
        return (self._catch_up and not self._lock.locked()) or (
            self.wal_bytes() > CEILING * self.target
        )

    @asynccontextmanager
    async def catching_up(self) -> AsyncIterator[None]:
        """Held around the writer's catch-up, so that no pass runs beside it."""
        async with self._lock:
            yield
        self._catch_up = False

    def after_commit(self) -> None:
        """Wake the checkpointer at once when the WAL file has passed its target."""
        if not self._wake.is_set() and self.wal_bytes() > self.target:
            self._wake.set()

    def observe(self, result: Result | sqlite3.Error) -> None:
        """Count what a checkpoint (a pass or the writer's catch-up) reported."""
        if isinstance(result, sqlite3.Error):
            if self.failing is None:
                log.error("checkpoint of %s failed, the WAL keeps growing: %s", self.path, result)
            self.failing = str(result)
            return
        if self.failing is not None:
            log.warning("checkpoints of %s succeed again", self.path)
            self.failing = None
        _busy, frames, _copied = result
        if frames < 0:  # not in WAL mode
            return
        generation = self._read_generation()
        restarted = (
            generation != self._generation
            if generation is not None and self._generation is not None
            else frames < self._frames
        )
        if restarted:  # the log started over since the last checkpoint
            self.restarts += 1
            self.frames_written += frames
        else:
            self.frames_written += max(0, frames - self._frames)
        self._frames, self._generation = frames, generation

    def _read_generation(self) -> int | None:
        """The checkpoint sequence number in the WAL file's header (bytes
        12-15, big-endian), which SQLite counts up each time the log starts over."""
        try:
            with self.wal_path.open("rb") as wal:
                header = wal.read(16)
        except FileNotFoundError:
            return None
        return int.from_bytes(header[12:16], "big") if len(header) == 16 else None

    # -- the checkpointer's side ------------------------------------------------

    async def _run(self) -> None:
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            await self.run_pass()

    async def run_pass(self) -> None:
        """One passive checkpoint on the checkpointer's own connection."""
        if self._connection is None:
            return
        result: Result | sqlite3.Error
        async with self._lock:
            try:
                result = _result(next(iter(await self._connection.execute_fetchall(PASSIVE)), None))
            except sqlite3.Error as exc:
                result = exc
        self.observe(result)
        self._catch_up = self.wal_bytes() > self.target


def catch_up(db: sqlite3.Connection) -> Result | sqlite3.Error:
    """The writer's checkpoint, on its own connection's thread. A failure (a
    full disk, say) is reported, never raised: the commit that follows does
    not depend on it."""
    try:
        return _result(db.execute(PASSIVE).fetchone())
    except sqlite3.Error as exc:
        return exc


def _result(row: Any) -> Result:
    return (int(row[0]), int(row[1]), int(row[2])) if row else (0, -1, -1)
