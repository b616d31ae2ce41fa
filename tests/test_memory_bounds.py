"""Tables keyed by device id stay within their stated bounds while a million
distinct ids pass through (docs/architecture.md, "Memory: what grows with
what"). Presence has its own test (tests/test_presence.py)."""

from __future__ import annotations

import sqlite3
import tracemalloc
from pathlib import Path
from typing import Any

import aiosqlite
import orjson
import pytest

from hub.limits import MAX_TRACKED, RateLimiter
from hub.models import PendingReading, WriteBatch
from hub.store import transaction
from hub.store.sqlite import SqliteStore


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.slow
def test_rate_limits_track_at_most_max_tracked_devices() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 2.0, clock=clock)
    tracemalloc.start()
    try:
        # twice the table: its dict has reached the size it keeps while churning
        for n in range(2 * MAX_TRACKED):
            clock.now += 0.001
            limiter.allow(f"churn-{n}")
        full, _ = tracemalloc.get_traced_memory()
        for n in range(2 * MAX_TRACKED, 1_000_000):
            clock.now += 0.001
            limiter.allow(f"churn-{n}")
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a million ids later, no more than when the table had filled
    assert after <= full * 1.01
    assert full < MAX_TRACKED * 400  # bytes per tracked device, at most
    # the newest are tracked: a device that just spent its burst waits
    limiter.allow("churn-999999")
    assert limiter.allow("churn-999999") > 0
    # the oldest were forgotten: they start again with a full bucket
    assert limiter.allow("churn-0") == 0


@pytest.mark.unit
def test_rate_limits_forget_devices_whose_bucket_is_full_again() -> None:
    clock = Clock()
    limiter = RateLimiter(200.0, 400.0, clock=clock)
    for n in range(10_000):  # a fleet that each sent one message
        limiter.allow(f"idle-{n}")
    assert len(limiter) == 10_000
    clock.now += 2.0  # burst / rate: every bucket is full again
    for n in range(5_001):  # the active part of the fleet
        limiter.allow(f"active-{n % 10}")
    assert len(limiter) == 10  # the idle ones were forgotten, two a call


@pytest.mark.unit
def test_rate_limits_of_one_device_hold_while_others_churn() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 2.0, clock=clock, max_tracked=100)
    assert limiter.allow("steady") == 0
    assert limiter.allow("steady") == 0
    for n in range(50):
        limiter.allow(f"other-{n}")
    assert limiter.allow("steady") == pytest.approx(1.0)


async def test_series_numbers_keep_the_most_used_and_look_up_the_rest(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "hub.db")
    await store.open()
    try:
        for k in range(30):  # 30 batches of 100 new devices: 3,000 series
            readings = tuple(
                PendingReading(f"dev-{k}-{n}", "temperature", 1_795_000_000_000, 1.0, "Cel")
                for n in range(100)
            )
            await store.write(WriteBatch(readings=readings))
        # again, the first batch's devices: their numbers are found, not made anew
        again = tuple(
            PendingReading(f"dev-0-{n}", "temperature", 1_795_000_000_001, 2.0, "Cel")
            for n in range(100)
        )
        await store.write(WriteBatch(readings=again))
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "hub.db") as db:
        assert db.execute("SELECT count(*) FROM series").fetchone() == (3000,)
        rows = db.execute(
            "SELECT count(*) FROM readings WHERE device_id = 'dev-0-7' AND metric = 'temperature'"
        ).fetchone()
        assert rows == (2,)


@pytest.mark.unit
async def test_series_numbers_are_bounded() -> None:
    numbers = transaction.SeriesNumbers(kept=100)
    async with aiosqlite.connect(":memory:") as db:
        await db.executescript(
            "CREATE TABLE devices (id INTEGER PRIMARY KEY, device_id TEXT UNIQUE);"
            "CREATE TABLE series (id INTEGER PRIMARY KEY, device INTEGER, device_id TEXT,"
            " metric TEXT, unit TEXT, UNIQUE (device_id, metric, unit));"
        )
        for n in range(1000):
            await db.execute("INSERT INTO devices(device_id) VALUES (?)", (f"d{n}",))
            await numbers.resolve(
                [(f"d{n}", "temperature", "Cel")],
                lambda missing: transaction.create_series(db, missing),
            )
            numbers.committed()
        assert len(numbers) == 100
        # a series created in a transaction that rolled back is not remembered
        await db.execute("INSERT INTO devices(device_id) VALUES ('gone')")
        await numbers.resolve(
            [("gone", "temperature", "Cel")],
            lambda missing: transaction.create_series(db, missing),
        )
        numbers.rolled_back()
        assert len(numbers) == 100


@pytest.mark.unit
async def test_series_names_are_bounded_and_looked_up_again() -> None:
    names = transaction.SeriesNames(kept=100)
    async with aiosqlite.connect(":memory:") as db:
        await db.executescript(
            "CREATE TABLE series (id INTEGER PRIMARY KEY, device INTEGER, device_id TEXT,"
            " metric TEXT, unit TEXT, UNIQUE (device_id, metric, unit));"
        )
        await db.executemany(
            "INSERT INTO series(id, device, device_id, metric, unit) VALUES (?, 0, ?, 'temp', ?)",
            [(n, f"d{n}", "Cel" if n % 2 else "") for n in range(1, 1001)],
        )
        queries = 0

        async def fetch(numbers: list[int]) -> list[Any]:
            nonlocal queries
            queries += 1
            return list(
                await db.execute_fetchall(transaction.SELECT_SERIES_NAMES, (orjson.dumps(numbers),))
            )

        for first in range(1, 1001, 50):
            found = await names.of(range(first, first + 50), fetch)
            assert found == {
                n: (f"d{n}", "temp", "Cel" if n % 2 else None) for n in range(first, first + 50)
            }
        assert len(names) == 100
        assert queries == 20
        # the last ones are kept, the first ones were let go and are looked up again
        assert (await names.of([1000, 999], fetch))[999] == ("d999", "temp", "Cel")
        assert queries == 20
        assert (await names.of([1, 1000], fetch))[1] == ("d1", "temp", "Cel")
        assert queries == 21
        assert len(names) == 100
