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

`WalMeter` counts what each commit writes to the WAL, from the WAL index's
header (the `-shm` file, whose format sqlite.org/walformat.html documents):
`mxFrame`, the frames in the log, and the salt, which changes each time the
log starts over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import sys
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
        self.failing: str | None = None
        self._catch_up = False
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._connection: aiosqlite.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
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
        """Note what a checkpoint (a pass or the writer's catch-up) came to:
        whether it failed, and why."""
        if isinstance(result, sqlite3.Error):
            if self.failing is None:
                log.error("checkpoint of %s failed, the WAL keeps growing: %s", self.path, result)
            self.failing = str(result)
            return
        if self.failing is not None:
            log.warning("checkpoints of %s succeed again", self.path)
            self.failing = None

    # -- the checkpointer's side ------------------------------------------------

    async def _run(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow
            # a cancel that comes as the wait ends, and close() would hang
            with suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            await self.run_pass()

    async def run_pass(self) -> None:
        """One passive checkpoint on the checkpointer's own connection."""
        if self._connection is None:
            return
        async with self._lock:
            result = await passive(self._connection)
        self.observe(result)
        self._catch_up = self.wal_bytes() > self.target


class WalMeter:
    """Counts the bytes written to the WAL and the times it started over.

    Read after every commit, before the writer's next transaction (no other
    connection writes): the frames a commit appended are the growth of `mxFrame`, or all
    of it when the salt changed (the log started over with that commit)."""

    def __init__(self, path: Path):
        self.shm_path = Path(f"{path}-shm")
        self.page_size = 4096
        self.frames_written = 0
        self.restarts = 0
        self._frames = 0
        self._salt = b""
        self._shm: int | None = None

    def open(self, page_size: int) -> None:
        """Once the database is in WAL mode (its -shm file exists)."""
        self.page_size = page_size
        self._shm = os.open(self.shm_path, os.O_RDONLY)
        self._frames, self._salt = self._header()

    def close(self) -> None:
        if self._shm is not None:
            os.close(self._shm)
            self._shm = None

    @property
    def written_bytes(self) -> int:
        """Bytes appended to the WAL since the store opened."""
        return self.frames_written * (self.page_size + FRAME_HEADER)

    def count(self) -> None:
        """After a commit: add what it wrote."""
        if self._shm is None:
            return
        frames, salt = self._header()
        if salt != self._salt:
            self.restarts += 1
            self.frames_written += frames
        else:
            self.frames_written += max(0, frames - self._frames)
        self._frames, self._salt = frames, salt

    def _header(self) -> tuple[int, bytes]:
        """mxFrame (bytes 16-19, native order) and aSalt (32-39) of the WAL
        index header's first copy."""
        assert self._shm is not None
        header = os.pread(self._shm, 48, 0)
        if len(header) < 48:
            return 0, b""
        return int.from_bytes(header[16:20], sys.byteorder), header[32:40]


async def passive(db: aiosqlite.Connection) -> Result | sqlite3.Error:
    """A passive checkpoint on `db`: what it came to, or why it failed (a
    full disk, say), never raised: the writer's commit that follows its
    catch-up does not depend on it."""
    try:
        rows = await db.execute_fetchall(PASSIVE)
    except sqlite3.Error as exc:
        return exc
    return _result(next(iter(rows), None))


def _result(row: Any) -> Result:
    return (int(row[0]), int(row[1]), int(row[2])) if row else (0, -1, -1)
