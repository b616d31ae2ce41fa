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
        checkpoints = store.checkpoints
        written = checkpoints.written_bytes
        # the log was written many times over, yet its file stayed near the target
        assert written > 10 * TARGET
        assert checkpoints.restarts >= 10
        # past the ceiling commits wait: at most one commit beyond it
        assert largest <= (CEILING + 1) * TARGET, largest
        assert checkpoints.failing is None
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "hub.db") as db:
        assert db.execute("SELECT count(*) FROM readings").fetchone() == (36_000,)


async def test_every_frame_written_is_counted(tmp_path: Path) -> None:
    # a target never reached and no timed pass: the log never starts over,
    # so its file holds every frame ever written
    store = SqliteStore(tmp_path / "hub.db", wal_target=1 << 40, checkpoint_every=3600)
    await store.open()
    try:
        for k in range(50):
            await store.write(batch(60 * k))
        await store.checkpoints.run_pass()
        assert store.checkpoints.restarts == 0
        assert store.checkpoints.written_bytes == store.checkpoints.wal_bytes() - WAL_HEADER
        # once the log has been copied, the next commit starts it over: counted anew
        before = store.checkpoints.written_bytes
        await store.write(batch(10_000))
        await store.checkpoints.run_pass()
        assert store.checkpoints.restarts == 1
        added = store.checkpoints.written_bytes - before
        assert 0 < added < 200 * (4096 + 24)
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
        first = store.checkpoints.written_bytes
        assert first == store.checkpoints.wal_bytes() - WAL_HEADER
        for k in range(5, 30):  # more than before: the log is longer than it was
            await store.write(batch(60 * k))
        assert store.checkpoints.wal_bytes() - WAL_HEADER > first
        await store.checkpoints.run_pass()
        assert store.checkpoints.restarts == 1
        again = store.checkpoints.written_bytes - first
        assert again == store.checkpoints.wal_bytes() - WAL_HEADER
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
        restarts = store.checkpoints.restarts
        k = 20
        while store.checkpoints.wal_bytes() < 3 * TARGET:
            await store.write(batch(60 * k))
            k += 1
        assert store.checkpoints.restarts == restarts
        reader.execute("COMMIT")  # the query ends
        for _ in range(200):
            await store.write(batch(60 * k))
            k += 1
            if store.checkpoints.wal_bytes() <= TARGET:
                break
            await asyncio.sleep(0)
        assert store.checkpoints.wal_bytes() <= TARGET
        await store.checkpoints.run_pass()  # which sees the log started over
        assert store.checkpoints.restarts > restarts
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
        assert store.checkpoints.page_size == 4096
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
    # the window filled within the first 40 batches; after that, no growth
    # beyond a few pages of slack
    assert sizes[-1] <= sizes[2] + 64 * 1024, sizes
