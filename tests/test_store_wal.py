"""The SQLite store's write-ahead log stays bounded under continuous commits,
on a real file: it starts over, its file is cut back, and every frame
written is counted."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from hub.models import PendingReading, WriteBatch
from hub.store.checkpoints import CEILING
from hub.store.sqlite import SqliteStore

T0 = 1_795_000_020_000
TARGET = 1024 * 1024
WAL_HEADER = 32


def batch(first: int, size: int = 60, devices: int = 20) -> WriteBatch:
    """`size` readings spread over `devices` devices and 3 metrics, as a busy hub commits them."""
    metrics = ("temperature", "humidity", "pressure")
    return WriteBatch(
        readings=tuple(
            PendingReading(
                f"dev-{n % devices:03d}", metrics[n % 3], T0 + n, float(n), None, n // devices
            )
            for n in range(first, first + size)
        )
    )


async def test_the_wal_starts_over_while_commits_never_pause(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "hub.db", wal_target=TARGET, checkpoint_every=0.05)
    await store.open()
    try:
        largest = 0
        for k in range(600):  # back to back: the writer never waits for anything else
            await store.write(batch(60 * k))
            largest = max(largest, store.checkpoints.wal_bytes())
        checkpoints, wal = store.checkpoints, store.wal
        # the log was written many times over, yet its file stayed near the target
        assert wal.written_bytes > 10 * TARGET
        assert wal.restarts >= 10
        # past the ceiling commits wait: at most one commit beyond it
        assert largest <= (CEILING + 1) * TARGET, largest
        assert checkpoints.failing is None
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "hub.db") as db:
        assert db.execute("SELECT count(*) FROM readings").fetchone() == (36_000,)


async def test_every_frame_written_is_counted(tmp_path: Path) -> None:
    # no timed pass: the log never starts over, so its file grows by every
    # frame written
    store = SqliteStore(tmp_path / "hub.db", wal_target=1 << 40, checkpoint_every=3600)
    await store.open()
    try:
        opened = store.checkpoints.wal_bytes()  # what opening (the schema) wrote
        for k in range(50):
            await store.write(batch(60 * k))
        assert store.wal.restarts == 0
        assert store.wal.written_bytes == store.checkpoints.wal_bytes() - opened > 0
        # once the log has been copied, the next commit starts it over
        await store.checkpoints.run_pass()
        before = store.wal.written_bytes
        await store.write(batch(10_000))
        assert store.wal.restarts == 1
        assert 0 < store.wal.written_bytes - before < 200 * (1024 + 24)
    finally:
        await store.close()


async def test_a_restart_is_counted_when_the_log_grew_past_its_old_length_since(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "hub.db", wal_target=1 << 40, checkpoint_every=3600)
    await store.open()
    try:
        for k in range(5):
            await store.write(batch(60 * k))
        await store.checkpoints.run_pass()  # complete: the next commit starts over
        old_length = store.checkpoints.wal_bytes()
        first = store.wal.written_bytes
        for k in range(5, 30):  # more than before: the log grows past its old length
            await store.write(batch(60 * k))
        assert store.checkpoints.wal_bytes() > old_length
        assert store.wal.restarts == 1
        # everything since the restart is in the file, from its start
        assert store.wal.written_bytes - first == store.checkpoints.wal_bytes() - WAL_HEADER
    finally:
        await store.close()


async def test_a_reader_holding_the_old_log_delays_the_restart_until_it_ends(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hub.db"
    store = SqliteStore(path, wal_target=TARGET, checkpoint_every=0.05)
    await store.open()
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        for k in range(20):
            await store.write(batch(60 * k))
        # a long query: its snapshot needs the log as it is now
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM readings").fetchone()
        restarts = store.wal.restarts
        k = 20
        while store.checkpoints.wal_bytes() < 3 * TARGET:
            await store.write(batch(60 * k))
            k += 1
        assert store.wal.restarts == restarts
        reader.execute("COMMIT")  # the query ends
        for _ in range(200):
            await store.write(batch(60 * k))
            k += 1
            if store.checkpoints.wal_bytes() <= TARGET:
                break
            await asyncio.sleep(0)
        assert store.checkpoints.wal_bytes() <= TARGET
        assert store.wal.restarts > restarts
    finally:
        reader.close()
        await store.close()


async def test_a_new_store_writes_1_kib_pages(tmp_path: Path) -> None:
    # a commit writes each page it touches to the WAL whole: smaller pages,
    # fewer bytes for the same few readings per index page
    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    await store.close()
    with sqlite3.connect(tmp_path / "hub.db") as db:
        assert db.execute("PRAGMA page_size").fetchone() == (1024,)


async def test_a_store_made_with_4_kib_pages_keeps_them(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA page_size = 4096")
        db.execute("CREATE TABLE earlier (x)")
    store = SqliteStore(path)
    await store.open()
    try:
        written = await store.write(batch(0))
        assert len(written.readings) == 60
        assert store.wal.page_size == 4096
    finally:
        await store.close()


async def test_with_retention_the_database_file_stops_growing(tmp_path: Path) -> None:
    # a window of 20 batches: once it is full, each purge frees the pages the
    # next batches fill
    store = SqliteStore(tmp_path / "hub.db", checkpoint_every=3600)
    await store.open()
    window = 20 * 600
    sizes: list[int] = []
    try:
        for k in range(200):
            await store.write(batch(600 * k, size=600))
            newest = T0 + 600 * k + 599
            await store.purge(newest - window, limit=5000)
            if k % 20 == 19:
                await store.checkpoints.run_pass()
                sizes.append(store.db_bytes())
        assert store.purged_through > 0
        stored = await store.count_after(0, store.head, None, 10**9)
        assert window - 600 <= stored <= window + 1
    finally:
        await store.close()
    # The window filled within the first 40 batches. Without retention every
    # 20 batches would add about 1 MB (a window's worth); with it, the file
    # stays within 5% of its size once the window has turned over a few
    # times (measured: +2% over 20 more windows, B-tree pages settling).
    assert sizes[-1] - sizes[3] <= sizes[3] // 20, sizes
