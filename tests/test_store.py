"""The SQLite store on a real file: seq, dedup, epoch, queries, migrations."""

from __future__ import annotations

import asyncio
import math
import random
import sqlite3
import struct
from pathlib import Path

import pytest

from hub.errors import StoreError
from hub.models import (
    Attribute,
    PendingReading,
    PresenceChange,
    Rejection,
    RejectReason,
    Source,
    WriteBatch,
)
from hub.store.migrations import MIGRATIONS
from hub.store.sqlite import SqliteStore

T0 = 1_795_000_020_000  # an epoch-ms timestamp on a minute boundary


def reading(
    device: str = "dev-1",
    metric: str = "temperature",
    ts: int = T0,
    value: float = 21.5,
    device_seq: int | None = None,
) -> PendingReading:
    return PendingReading(device, metric, ts, value, "Cel", device_seq)


async def opened(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    await store.open()
    return store


async def test_seq_increases_strictly_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    store = await opened(path)
    first = await store.write(WriteBatch(readings=tuple(reading(value=i) for i in range(3))))
    assert [r.seq for r in first.readings] == [1, 2, 3]
    await store.close()

    store = await opened(path)
    assert store.head == 3
    second = await store.write(WriteBatch(readings=(reading(value=9),)))
    assert [r.seq for r in second.readings] == [4]
    await store.close()


async def test_a_batch_is_stored_exactly_as_given_and_in_its_order(tmp_path: Path) -> None:
    # The batch travels to SQLite as bound values in 1,024-row statements and
    # the rest as one JSON text: every double must come back bit for bit,
    # strings whole, and seqs in the batch's order.
    rng = random.Random(7)
    values = [0.1, -0.0, 5e-324, 1.7976931348623157e308, 2.2250738585072014e-308, 1e-7, 3.0]
    while len(values) < 5000:
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            values.append(value)
    units = ["Cel", None, "µg/m³", "%RH"]
    batch = tuple(
        PendingReading(
            f"dev-{i % 7}",
            ("temperature", "humidity", "pm2_5")[i % 3],
            T0 + rng.randrange(-(10**9), 10**9),
            value,
            units[i % 4],
            i if i % 2 else None,
        )
        for i, value in enumerate(values)
    )
    path = tmp_path / "hub.db"
    store = await opened(path)
    outcome = await store.write(WriteBatch(readings=batch))
    await store.close()

    assert [r.seq for r in outcome.readings] == list(range(1, len(batch) + 1))
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT seq, device_id, metric, ts, value, unit, device_seq FROM readings ORDER BY seq"
        ).fetchall()
    assert [row[0] for row in rows] == list(range(1, len(batch) + 1))
    stored = [tuple(row[1:]) for row in rows]
    assert stored == [tuple(p) for p in batch]
    # Bit for bit, except -0.0: SQLite stores a REAL zero as 0, however inserted.
    assert all(
        struct.pack("<d", row[4]) == struct.pack("<d", p.value)
        for row, p in zip(rows, batch, strict=True)
        if p.value != 0
    )


async def test_seq_is_never_reused_after_the_newest_rows_are_deleted(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    store = await opened(path)
    await store.write(WriteBatch(readings=(reading(), reading(value=2))))
    await store.close()
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM samples")
    store = await opened(path)
    outcome = await store.write(WriteBatch(readings=(reading(value=3),)))
    assert [r.seq for r in outcome.readings] == [3]
    await store.close()


async def test_epoch_is_kept_across_restarts_and_new_for_a_new_store(tmp_path: Path) -> None:
    store = await opened(tmp_path / "a.db")
    epoch = store.epoch
    await store.close()
    store = await opened(tmp_path / "a.db")
    assert store.epoch == epoch
    await store.close()
    other = await opened(tmp_path / "b.db")
    assert other.epoch
    assert other.epoch != epoch
    await other.close()


async def test_a_repeated_device_seq_is_stored_once(tmp_path: Path) -> None:
    store = await opened(tmp_path / "hub.db")
    message = (reading(device_seq=17), reading(metric="humidity", value=40, device_seq=17))
    first = await store.write(WriteBatch(readings=message))
    assert first.stored == (True, True)

    again = await store.write(WriteBatch(readings=(*message, reading(device_seq=18))))
    assert again.stored == (False, False, True)
    [new] = again.readings
    assert (new.device_id, new.metric, new.value) == ("dev-1", "temperature", 21.5)
    # SQLite spends a number on each ignored duplicate: seqs may have holes,
    # but they only ever grow, and head is past every number spent.
    assert new.seq > 2
    assert store.head >= new.seq
    after = await store.write(WriteBatch(readings=(reading(value=1),)))
    assert after.readings[0].seq == store.head > new.seq
    assert [r.seq for r in await store.readings_after(0, store.head, None, 10)] == [
        1,
        2,
        new.seq,
        after.readings[0].seq,
    ]
    await store.close()


async def test_duplicates_within_one_batch_keep_the_first(tmp_path: Path) -> None:
    store = await opened(tmp_path / "hub.db")
    batch = (
        reading(value=1, device_seq=5),
        reading(value=2, device_seq=5),
        reading(value=3),  # no device seq: never a duplicate
        reading(value=4),
        reading(device="dev-2", value=5, device_seq=5),  # another device, same seq
    )
    outcome = await store.write(WriteBatch(readings=batch))
    assert outcome.stored == (True, False, True, True, True)
    stored = await store.readings_after(0, store.head, None, 100)
    assert [(r.seq, r.device_id, r.value) for r in stored] == [
        (r.seq, r.device_id, r.value) for r in outcome.readings
    ]
    assert [(r.device_id, r.value) for r in stored] == [
        ("dev-1", 1),
        ("dev-1", 3),
        ("dev-1", 4),
        ("dev-2", 5),
    ]
    assert [r.seq for r in stored] == sorted({r.seq for r in stored})
    await store.close()


async def test_readings_after_gives_back_what_was_written(tmp_path: Path) -> None:
    """Every field as written: devices, metrics, a metric in two units, no
    unit, across a restart (the reader names series from its own cache)."""
    path = tmp_path / "hub.db"
    store = await opened(path)
    batch = (
        PendingReading("dev-1", "temperature", T0, 21.5, "Cel", None),
        PendingReading("dev-1", "temperature", T0 + 1, 70.7, "[degF]", None),
        PendingReading("dev-2", "count", T0 + 2, 3.0, None, 9),
        PendingReading("dev-1", "temperature", T0 + 3, 0.1, "Cel", None),
    )
    try:
        written = (await store.write(WriteBatch(readings=batch))).readings
        assert await store.readings_after(0, store.head, None, 10) == list(written)
    finally:
        await store.close()
    store = await opened(path)
    try:
        assert await store.readings_after(1, store.head, {"dev-2"}, 10) == [written[2]]
        assert await store.readings_after(0, store.head, None, 10) == list(written)
    finally:
        await store.close()


async def test_duplicates_are_found_in_every_statement_of_a_large_batch(tmp_path: Path) -> None:
    """2,500 readings go in as two 1,024-row statements and one JSON array:
    a repeat in each part is ignored, and what is stored keeps its order."""
    store = await opened(tmp_path / "hub.db")
    await store.write(WriteBatch(readings=(reading(device_seq=0),)))
    batch = tuple(reading(value=i, device_seq=i) for i in range(2500))
    repeats = {0, 1500, 2400}  # already stored; in the second statement; in the JSON
    batch = tuple(
        reading(value=-1, device_seq=i - 1) if i in repeats - {0} else r
        for i, r in enumerate(batch)
    )
    outcome = await store.write(WriteBatch(readings=batch))
    assert [i for i, kept in enumerate(outcome.stored) if not kept] == sorted(repeats)
    assert [r.value for r in outcome.readings] == [i for i in range(2500) if i not in repeats]
    stored = await store.readings_after(1, store.head, None, 3000)
    assert [(r.seq, r.value) for r in stored] == [(r.seq, r.value) for r in outcome.readings]
    assert [r.seq for r in stored] == sorted(r.seq for r in stored)
    await store.close()


async def test_readings_latest_first_page_and_ranges(tmp_path: Path) -> None:
    store = await opened(tmp_path / "hub.db")
    await store.write(
        WriteBatch(readings=tuple(reading(ts=T0 + i * 1000, value=i) for i in range(10)))
    )
    latest = await store.readings("dev-1", "temperature", None, None, 3)
    assert [r.value for r in latest] == [7, 8, 9]  # the latest three, oldest first
    page = await store.readings("dev-1", "temperature", T0 + 2000, None, 3)
    assert [r.value for r in page] == [2, 3, 4]
    window = await store.readings("dev-1", "temperature", T0 + 2000, T0 + 4000, 100)
    assert [r.value for r in window] == [2, 3, 4]  # from and to are inclusive
    assert await store.readings("dev-1", "humidity", None, None, 10) == []
    await store.close()


async def test_buckets_aggregate_min_max_mean_count(tmp_path: Path) -> None:
    store = await opened(tmp_path / "hub.db")
    values = [(0, 10.0), (20_000, 20.0), (59_999, 30.0), (60_000, 5.0), (180_000, 7.0)]
    await store.write(WriteBatch(readings=tuple(reading(ts=T0 + dt, value=v) for dt, v in values)))
    buckets = await store.buckets("dev-1", "temperature", T0, None, 60_000, 100)
    assert [b.to_wire() for b in buckets] == [
        {"ts": T0, "min": 10.0, "max": 30.0, "mean": 20.0, "count": 3},
        {"ts": T0 + 60_000, "min": 5.0, "max": 5.0, "mean": 5.0, "count": 1},
        {"ts": T0 + 180_000, "min": 7.0, "max": 7.0, "mean": 7.0, "count": 1},
    ]
    latest = await store.buckets("dev-1", "temperature", None, None, 60_000, 2)
    assert [b.ts for b in latest] == [T0 + 60_000, T0 + 180_000]
    await store.close()


async def test_readings_after_filters_devices_in_seq_order(tmp_path: Path) -> None:
    store = await opened(tmp_path / "hub.db")
    await store.write(
        WriteBatch(readings=tuple(reading(device=f"d{i % 3}", value=i) for i in range(9)))
    )
    picked = await store.readings_after(2, 9, {"d0", "d2"}, 100)
    assert [(r.seq, r.device_id) for r in picked] == [
        (3, "d2"),
        (4, "d0"),
        (6, "d2"),
        (7, "d0"),
        (9, "d2"),
    ]
    assert [r.seq for r in await store.readings_after(6, 9, None, 2)] == [7, 8]
    await store.close()


async def test_devices_latest_metrics_attributes_and_presence(tmp_path: Path) -> None:
    store = await opened(tmp_path / "hub.db")
    await store.write(
        WriteBatch(
            readings=(reading(ts=T0 + 5, value=2.0), reading(ts=T0, value=1.0)),
            attributes=(Attribute("dev-1", "firmware", "1.2.3", T0),),
            presence=(PresenceChange("dev-1", True, T0 + 10),),
            seen={"dev-1": T0 + 10},
        )
    )
    # a backfilled older reading and attribute do not replace the latest ones
    await store.write(
        WriteBatch(
            readings=(reading(ts=T0 - 1000, value=-1.0),),
            attributes=(Attribute("dev-1", "firmware", "1.0.0", T0 - 1000),),
            seen={"dev-1": T0 + 20},
        )
    )
    [device] = await store.devices()
    assert device.device_id == "dev-1"
    assert (device.first_seen, device.last_seen, device.online) == (T0 + 10, T0 + 20, True)
    assert [(m.metric, m.value, m.ts, m.unit) for m in device.metrics] == [
        ("temperature", 2.0, T0 + 5, "Cel")
    ]
    assert [(a.name, a.value) for a in device.attributes] == [("firmware", "1.2.3")]
    assert await store.metric_unit("dev-1", "temperature") == "Cel"
    await store.close()


async def test_latest_values_of_many_devices_in_one_batch(tmp_path: Path) -> None:
    """The latest-value and device upserts go in as one statement per batch."""
    store = await opened(tmp_path / "hub.db")
    metrics = ("temperature", "humidity", "pressure")
    first = tuple(
        reading(f"dev-{d:03}", m, T0 + d, d + k / 10)
        for d in range(150)
        for k, m in enumerate(metrics)
    )
    seen = {f"dev-{d:03}": T0 + d for d in range(150)}
    await store.write(WriteBatch(readings=first, seen=seen))
    # Newer values for the even devices, older ones for the odd: only the
    # newer replace what is there.
    second = tuple(
        reading(f"dev-{d:03}", m, T0 + d + (1000 if d % 2 == 0 else -1000), -1.0)
        for d in range(150)
        for m in metrics
    )
    later = {f"dev-{d:03}": T0 + 5000 for d in range(0, 150, 2)}
    await store.write(WriteBatch(readings=second, seen=later))
    devices = {d.device_id: d for d in await store.devices()}
    assert len(devices) == 150
    for n in range(150):
        device = devices[f"dev-{n:03}"]
        assert device.first_seen == T0 + n
        assert device.last_seen == (T0 + 5000 if n % 2 == 0 else T0 + n)
        expected = {m: (-1.0 if n % 2 == 0 else n + k / 10) for k, m in enumerate(metrics)}
        assert {m.metric: m.value for m in device.metrics} == expected
        assert {m.unit for m in device.metrics} == {"Cel"}
    await store.close()


async def test_rejections_are_kept_and_counted(tmp_path: Path) -> None:
    store = await opened(tmp_path / "hub.db")
    rejections = (
        Rejection(Source.MQTT, "dev-1", RejectReason.INVALID_JSON, "bad", T0, "{oops"),
        Rejection(Source.HTTP, "dev-2", RejectReason.NON_FINITE, "NaN", T0 + 1, "{}"),
        Rejection(Source.HTTP, "dev-2", RejectReason.NON_FINITE, "inf", T0 + 2, "{}"),
    )
    await store.write(WriteBatch(rejections=rejections))
    assert await store.rejection_counts() == {"invalid_json": 1, "non_finite": 2}
    newest = await store.rejections(2)
    assert [(r.device_id, r.detail) for r in newest] == [("dev-2", "inf"), ("dev-2", "NaN")]
    await store.close()


async def test_migrations_run_once_and_record_the_version(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    store = await opened(path)
    await store.close()
    store = await opened(path)  # a second open finds the schema current
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_store_from_a_newer_hub_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hub.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer than this hub"):
        await opened(path)


async def test_a_store_that_cannot_be_created_says_where(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="open failed"):
        await opened(blocker / "hub.db")


async def test_readings_after_stops_at_upto_and_counts_are_bounded(tmp_path: Path) -> None:
    store = await opened(tmp_path / "hub.db")
    await store.write(WriteBatch(readings=tuple(reading(value=i) for i in range(10))))
    assert [r.seq for r in await store.readings_after(3, 6, None, 100)] == [4, 5, 6]
    assert await store.count_after(3, 6, None, 100) == 3
    assert await store.count_after(0, 10, None, 4) == 4  # stops counting at the limit
    assert await store.count_after(0, 10, {"nobody"}, 100) == 0
    await store.close()


async def test_purge_deletes_an_old_prefix_in_small_steps_and_remembers_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hub.db"
    store = await opened(path)
    old = [reading(ts=T0 + i, value=i) for i in range(5)]
    new = [reading(ts=T0 + 10_000, value=9), reading(ts=T0 + 1, value=-1)]
    await store.write(WriteBatch(readings=(*old, *new)))
    assert await store.purge(T0 + 5_000, limit=3) == 3
    assert store.purged_through == 3
    assert await store.purge(T0 + 5_000, limit=3) == 2
    # stops at the first reading new enough, even if older ones follow it
    assert await store.purge(T0 + 5_000, limit=3) == 0
    assert store.purged_through == 5
    assert [r.value for r in await store.readings_after(0, store.head, None, 10)] == [9, -1]
    await store.close()
    store = await opened(path)
    assert store.purged_through == 5
    await store.close()


async def test_commits_do_not_checkpoint_a_connection_of_its_own_does(tmp_path: Path) -> None:
    """The WAL reaches the database file within about a second, and never
    inside a commit (SQLite's automatic checkpoint is off on the writer)."""
    path = tmp_path / "hub.db"
    store = await opened(path)
    try:
        wal = path.with_name("hub.db-wal")
        batch = WriteBatch(readings=tuple(reading(value=i, ts=T0 + i) for i in range(5000)))
        for _ in range(10):  # about 2,000 pages: twice SQLite's automatic threshold
            await store.write(batch)
        unchecked = path.stat().st_size
        assert wal.stat().st_size > 4 * unchecked  # no commit copied the WAL back
        deadline = asyncio.get_running_loop().time() + 5
        while path.stat().st_size == unchecked:
            assert asyncio.get_running_loop().time() < deadline, "no checkpoint within 5 s"
            await asyncio.sleep(0.05)
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT count(*) FROM readings").fetchone() == (50_000,)
    finally:
        await store.close()


async def test_a_store_of_schema_2_is_migrated_with_every_reading_and_its_seq(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hub.db"
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("PRAGMA page_size = 4096")  # as the hub made them then
        for number, script in enumerate(MIGRATIONS[:2], start=1):
            db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
        db.execute("INSERT INTO meta(key, value) VALUES ('epoch', 'e-before')")
        db.execute(
            "INSERT INTO devices(device_id, first_seen, last_seen, online) "
            "VALUES ('dev-1', 1, 2, 1), ('dev-2', 3, 4, 0)"
        )
        old = [
            ("dev-1", "temperature", T0, 21.5, "Cel", 7),
            ("dev-1", "humidity", T0, 40.0, "%RH", 7),
            ("dev-2", "count", T0 + 1, 3.0, None, None),
            ("dev-2", "power", T0 + 2, 0.1 + 0.2, "W", None),
            ("dev-3", "temperature", T0 + 3, -4.25, "Cel", 1),  # no devices row
        ]
        db.executemany(
            "INSERT INTO readings(device_id, metric, ts, value, unit, device_seq) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            old,
        )
        db.execute("DELETE FROM readings WHERE seq = 3")
        # seqs that duplicates consumed: the allocator is past the last row
        db.execute("UPDATE sqlite_sequence SET seq = 9 WHERE name = 'readings'")
    store = await opened(path)
    try:
        assert (store.epoch, store.head) == ("e-before", 9)
        kept = [r for k, r in enumerate(old, start=1) if k != 3]
        stored = await store.readings_after(0, 9, None, 100)
        assert [r.seq for r in stored] == [1, 2, 4, 5]
        assert [(r.device_id, r.metric, r.ts, r.value, r.unit) for r in stored] == [
            r[:5] for r in kept
        ]
        assert [r.seq for r in await store.readings_after(0, 9, ["dev-2"], 100)] == [4]
        assert [d.device_id for d in await store.devices()] == ["dev-1", "dev-2", "dev-3"]
        # the old device seqs still deduplicate; new readings continue the seqs
        again = await store.write(
            WriteBatch(readings=(reading("dev-1", "temperature", device_seq=7), reading()))
        )
        assert again.stored == (False, True)
        (new,) = again.readings
        assert new.seq == store.head > 9
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        view = db.execute("SELECT seq, device_id, metric, unit FROM readings ORDER BY seq")
        assert view.fetchall()[-1] == (new.seq, "dev-1", "temperature", "Cel")


async def test_presence_changes_of_one_batch_apply_in_their_order(tmp_path: Path) -> None:
    store = await opened(tmp_path / "hub.db")
    try:
        flood = tuple(PresenceChange(f"dev-{n}", False, T0 + n) for n in range(5000))
        came_and_went = (
            PresenceChange("dev-x", True, T0 + 1),
            PresenceChange("dev-x", False, T0 + 2),
            PresenceChange("dev-y", False, T0 + 1),
            PresenceChange("dev-y", True, T0 + 3),
        )
        await store.write(WriteBatch(presence=flood + came_and_went))
        devices = {d.device_id: d for d in await store.devices()}
        assert len(devices) == 5002
        assert (devices["dev-x"].online, devices["dev-x"].last_seen) == (False, T0 + 2)
        assert (devices["dev-y"].online, devices["dev-y"].last_seen) == (True, T0 + 3)
        assert not devices["dev-4999"].online
    finally:
        await store.close()
