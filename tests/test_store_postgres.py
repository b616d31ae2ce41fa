"""The PostgreSQL store against a real server, each test on a database of
its own: what one hub stores and reads back, and what a cluster needs of
it: one ordered log that every hub follows, none skipped, under concurrent
writers; dedup and latest values across hubs; presence through the log."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from hub.errors import StoreError
from hub.models import (
    Attribute,
    CommandRecord,
    PendingReading,
    PresenceChange,
    Reading,
    WriteBatch,
)
from hub.store.feed import Committed, Follower
from hub.store.postgres import PostgresStore, redacted

T0 = 1_700_000_000_000

pytestmark = pytest.mark.timeout(120)


def reading(
    device: str = "dev-1",
    metric: str = "temperature",
    ts: int = T0,
    value: float = 21.5,
    device_seq: int | None = None,
    unit: str | None = "Cel",
) -> PendingReading:
    return PendingReading(device, metric, ts, value, unit, device_seq)


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def taken_until(follower: Follower, head: int) -> list[Committed]:
    """Everything the follower hands over until it reaches `head`."""
    entries: list[Committed] = []
    async with asyncio.timeout(20):
        while not entries or entries[-1].head < head:
            entries.append(await follower.next())
    return entries


def in_order(entries: list[Committed]) -> list[Reading]:
    for before, after in itertools.pairwise(entries):
        assert after.after == before.head, "entries are consecutive"
    return [r for e in entries for r in e.readings]


async def test_what_is_written_reads_back(postgres_url: str) -> None:
    async with opened(postgres_url) as store:
        assert store.head == 0
        batch = (
            reading(value=21.5),
            reading(ts=T0 + 1, value=70.7, unit="[degF]"),
            reading(device="dev-2", metric="count", ts=T0 + 2, value=3.0, unit=None, device_seq=9),
            reading(ts=T0 + 3, value=0.1),
        )
        outcome = await store.write(WriteBatch(readings=batch, seen={"dev-1": T0 + 5}))
        assert [r.seq for r in outcome.readings] == [1, 2, 3, 4]
        assert outcome.stored == (True,) * 4
        assert store.head == 4
        assert await store.readings_after(0, 4, None, 10) == list(outcome.readings)
        assert await store.readings_after(1, 4, {"dev-2"}, 10) == [outcome.readings[2]]
        assert await store.count_after(0, 4, None, 100) == 4
        assert await store.count_after(0, 4, None, 2) == 2
        history = await store.readings("dev-1", "temperature", T0, None, 10)
        assert [(r.value, r.unit) for r in history] == [
            (21.5, "Cel"),
            (70.7, "[degF]"),
            (0.1, "Cel"),
        ]
        latest = await store.readings("dev-1", "temperature", None, None, 1)
        assert [r.value for r in latest] == [0.1]
        buckets = await store.buckets("dev-1", "temperature", T0, None, 1000, 10)
        assert [(b.count, b.min, b.max) for b in buckets] == [(3, 0.1, 70.7)]
        devices = {d.device_id: d for d in await store.devices()}
        assert devices["dev-1"].last_seen == T0 + 5
        assert devices["dev-1"].metrics[0].value == 0.1
        assert devices["dev-2"].metrics[0].unit is None
        assert await store.metric_unit("dev-2", "count") is None
        epoch = store.epoch
    async with opened(postgres_url) as again:
        assert again.epoch == epoch
        assert again.head == 4
        assert await again.readings_after(0, 4, None, 10) == list(outcome.readings)


async def test_a_repeated_device_seq_is_stored_once_by_any_hub(postgres_url: str) -> None:
    async with opened(postgres_url) as a, opened(postgres_url) as b:
        first = await a.write(WriteBatch(readings=(reading(value=1, device_seq=5),)))
        again = await b.write(
            WriteBatch(readings=(reading(value=1, device_seq=5), reading(value=2, device_seq=6)))
        )
        assert first.stored == (True,)
        assert again.stored == (False, True)
        # both hubs at once, the same message: one stores it
        outcomes = await asyncio.gather(
            a.write(WriteBatch(readings=(reading(value=3, device_seq=7),))),
            b.write(WriteBatch(readings=(reading(value=3, device_seq=7),))),
        )
        assert sorted(o.stored for o in outcomes) == [(False,), (True,)]
        stored = await a.readings_after(0, max(a.head, b.head), None, 10)
        assert [r.value for r in stored] == [1, 2, 3]


async def test_latest_values_keep_the_newest_timestamp(postgres_url: str) -> None:
    async with opened(postgres_url) as a, opened(postgres_url) as b:
        await a.write(
            WriteBatch(
                readings=(reading(ts=T0 + 10, value=2),),
                attributes=(Attribute("dev-1", "fw", "2.0", T0 + 10),),
            )
        )
        # an older message reaches the other hub later
        await b.write(
            WriteBatch(
                readings=(reading(ts=T0, value=1),),
                attributes=(Attribute("dev-1", "fw", "1.0", T0),),
            )
        )
        [device] = await b.devices()
        assert [(m.ts, m.value) for m in device.metrics] == [(T0 + 10, 2)]
        assert [a.value for a in device.attributes] == ["2.0"]


async def test_every_hub_follows_every_commit_in_seq_order(postgres_url: str) -> None:
    """Three hubs write; each hub's follower gets every reading of all three,
    once, in seq order, and the presence changes among them."""
    async with (
        opened(postgres_url) as a,
        opened(postgres_url) as b,
        opened(postgres_url) as c,
    ):
        followers = [store.follow(store.head) for store in (a, b, c)]
        written: list[Reading] = []
        for n in range(30):
            store = (a, b, c)[n % 3]
            outcome = await store.write(
                WriteBatch(
                    readings=(reading(device=f"dev-{n % 3}", value=n),),
                    presence=(PresenceChange(f"dev-{n % 3}", n % 2 == 0, T0 + n),)
                    if n % 10 == 0
                    else (),
                )
            )
            written += outcome.readings
        head = max(s.head for s in (a, b, c))
        for follower in followers:
            entries = await taken_until(follower, head)
            assert in_order(entries) == written
            presence = [p for e in entries for p in e.presence]
            assert [(p.device_id, p.online) for p in presence] == [
                ("dev-0", True),
                ("dev-1", True),
                ("dev-2", True),
            ]


async def test_concurrent_writers_never_skip_or_reorder_a_seq(postgres_url: str) -> None:
    """Four hubs commit as fast as they can; a fifth follows. Every seq it
    sees is above the last, and in the end it saw exactly what is stored."""
    async with opened(postgres_url) as watcher:
        follower = watcher.follow(watcher.head)
        seen: list[int] = []
        done = asyncio.Event()

        async def follow() -> None:
            while not done.is_set() or watcher.feed.head < target:
                try:
                    async with asyncio.timeout(0.5):
                        entry = await follower.next()
                except TimeoutError:
                    continue
                seen.extend(r.seq for r in entry.readings)

        async def write(number: int) -> None:
            rng = random.Random(number)
            async with opened(postgres_url) as store:
                for n in range(60):
                    size = rng.randint(1, 40)
                    batch = tuple(
                        reading(device=f"w{number}-{k % 5}", value=n, ts=T0 + n)
                        for k in range(size)
                    )
                    await store.write(WriteBatch(readings=batch))

        target = 2**62
        following = asyncio.create_task(follow())
        await asyncio.gather(*(write(k) for k in range(4)))
        target = await asyncpg_head(postgres_url)
        done.set()
        await asyncio.wait_for(following, 30)
        assert seen == sorted(set(seen)), "strictly increasing"
        stored = await watcher.readings_after(0, target, None, 1_000_000)
        assert seen == [r.seq for r in stored]
        assert len(seen) > 1000


async def asyncpg_head(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        return int(await connection.fetchval("SELECT head FROM log_head"))
    finally:
        await connection.close()


async def test_two_hubs_opening_a_new_database_at_once_share_one_schema(
    postgres_url: str,
) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        assert len({s.epoch for s in stores}) == 1
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_purge_deletes_a_prefix_that_every_hub_learns(postgres_url: str) -> None:
    async with opened(postgres_url) as a, opened(postgres_url) as b:
        await a.write(WriteBatch(readings=tuple(reading(ts=T0 + i, value=i) for i in range(10))))
        assert await a.purge(T0 + 4, 100) == 4
        assert a.purged_through == 4
        left = await a.readings_after(0, a.head, None, 100)
        assert [r.value for r in left] == [4, 5, 6, 7, 8, 9]
        # the other hub learns it when it next reads the log
        following = b.follow(b.head)
        await a.write(WriteBatch(readings=(reading(ts=T0 + 20),)))
        await taken_until(following, a.head)
        assert b.purged_through == 4


async def test_commands_and_rejections_are_kept(postgres_url: str) -> None:
    async with opened(postgres_url) as store:
        record = CommandRecord("c1", "dev-1", "reboot", "{}", "mqtt", T0, T0 + 5, "ok", '"done"')
        await store.record_command(record)
        await store.record_command(record)  # the same id again replaces it
        assert await store.commands("dev-1", 10) == [record]
        assert await store.commands(None, 10) == [record]


async def test_a_database_that_is_away_is_a_store_error() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/nothing")
    with pytest.raises(StoreError, match="open"):
        await store.open()


def test_passwords_are_redacted() -> None:
    assert redacted("postgresql://hub:s3cret@db:5432/hub") == "postgresql://hub:***@db:5432/hub"
    assert redacted("postgresql://hub@db/hub") == "postgresql://hub@db/hub"


async def test_a_device_another_hub_still_hears_is_not_taken_offline(postgres_url: str) -> None:
    """Under a shared subscription each hub hears some of a device's
    messages. A hub whose share went quiet expires the device; if another
    hub heard it since, that change is not applied or logged. The hub that
    heard it last takes it offline; an online device does not come online
    again."""
    async with opened(postgres_url) as a, opened(postgres_url) as b:
        following = a.follow(a.head)
        await a.write(WriteBatch(presence=(PresenceChange("dev-1", True, T0),), seen={"dev-1": T0}))
        await b.write(
            WriteBatch(presence=(PresenceChange("dev-1", True, T0 + 50),), seen={"dev-1": T0 + 50})
        )
        await a.write(WriteBatch(presence=(PresenceChange("dev-1", False, T0),)))
        [device] = await a.devices()
        assert (device.online, device.last_seen) == (True, T0 + 50)
        await b.write(WriteBatch(presence=(PresenceChange("dev-1", False, T0 + 50),)))
        [device] = await b.devices()
        assert device.online is False
        entries = await taken_until(following, max(a.head, b.head))
        logged = [(p.online, p.last_seen) for e in entries for p in e.presence]
        assert logged == [(True, T0), (False, T0 + 50)]
