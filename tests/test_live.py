"""The live path (`hub.live.Live`) and the store's log it follows
(`hub.store.feed`), in the unit tier: against the fake store, a fake
python-socketio server that keeps what each client would receive, and fake
engine queues. The real thing is covered end to end by test_replay.py,
test_slow_dashboard.py, test_e2e.py and the browser tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from hub.config import ReplaySettings
from hub.live import Live, Subscription
from hub.metrics import Metrics
from hub.models import PendingReading, PresenceChange, Reading, WriteBatch
from hub.replay import Cursor, Replay
from hub.store.feed import Committed, Feed
from tests.fakes import FakeEngine, FakeServer, FakeStore
from tests.hubs import wait_until

pytestmark = pytest.mark.unit

T0 = 1_795_000_000_000


def batch(device: str, count: int, first: int = 0) -> WriteBatch:
    return WriteBatch(
        readings=tuple(
            PendingReading(device, "temperature", T0 + first + n, float(first + n), "Cel", None)
            for n in range(count)
        )
    )


async def fill(store: FakeStore, count: int, devices: tuple[str, ...] = ("d1",)) -> None:
    for n in range(count):
        await store.write(batch(devices[n % len(devices)], 1, n))


@asynccontextmanager
async def live_path(
    store: FakeStore, **options: Any
) -> AsyncIterator[tuple[Live, FakeServer, FakeEngine]]:
    server, engine = FakeServer(), FakeEngine()
    replay_settings = ReplaySettings(
        rate=1_000_000,
        burst=1_000_000,
        page_size=50,
        hub_rate=1_000_000,
        **options.pop("replay", {}),
    )
    replay = Replay(server, store, replay_settings, Metrics(), engine)  # type: ignore[arg-type]
    options = {"tick": 0.0, "frame_rate": 0.0, **options}
    async with Live(server, store, replay, Metrics(), **options) as live:  # type: ignore[arg-type]
        yield live, server, engine


# -- the log -------------------------------------------------------------------


def reading(seq: int) -> Reading:
    return Reading(seq, "d1", "temperature", T0 + seq, float(seq), "Cel")


def entry(after: int, head: int, presence: tuple[PresenceChange, ...] = ()) -> Committed:
    return Committed(after, head, tuple(reading(s) for s in range(after + 1, head + 1)), presence)


async def never(after: int, upto: int, limit: int) -> list[Reading]:
    raise AssertionError("read back from the store")


async def test_a_follower_takes_every_commit_in_order_merged_when_it_lags() -> None:
    feed = Feed()
    follower = feed.follow(0, never)
    assert await follower.take() is None
    feed.committed(entry(0, 3))
    feed.committed(entry(3, 3, (PresenceChange("d1", True, T0),)))  # no reading
    feed.committed(entry(3, 5))
    taken = await follower.take()
    assert taken is not None
    assert (taken.after, taken.head) == (0, 5)
    assert [r.seq for r in taken.readings] == [1, 2, 3, 4, 5]
    assert [p.device_id for p in taken.presence] == ["d1"]
    assert await follower.take() is None
    assert feed.kept == 0  # every follower took them: let go


async def test_a_follower_waits_for_the_next_commit() -> None:
    feed = Feed()
    follower = feed.follow(0, never)
    waiting = asyncio.create_task(follower.next())
    await asyncio.sleep(0)
    assert not waiting.done()
    feed.committed(entry(0, 2))
    taken = await asyncio.wait_for(waiting, 5)
    assert [r.seq for r in taken.readings] == [1, 2]


async def test_a_follower_behind_what_the_feed_keeps_reads_the_rest_from_the_store() -> None:
    stored = [reading(s) for s in range(1, 101)]
    reads: list[tuple[int, int]] = []

    async def read_back(after: int, upto: int, limit: int) -> list[Reading]:
        reads.append((after, upto))
        return [r for r in stored if after < r.seq <= upto][:limit]

    feed = Feed(keep=30)
    follower = feed.follow(0, read_back)
    for head in range(10, 101, 10):
        feed.committed(entry(head - 10, head))
    assert feed.kept <= 30
    taken = await follower.take()
    assert taken is not None
    assert [r.seq for r in taken.readings] == list(range(1, 101))  # none skipped, none twice
    assert reads == [(0, 70)]
    assert follower.missed == 1


async def test_a_follower_that_starts_behind_the_head_reads_back_first() -> None:
    stored = [reading(s) for s in range(1, 21)]

    async def read_back(after: int, upto: int, limit: int) -> list[Reading]:
        return [r for r in stored if after < r.seq <= upto][:limit]

    feed = Feed(head=20)
    follower = feed.follow(5, read_back)
    feed.committed(entry(20, 22))
    taken = await follower.take()
    assert taken is not None
    assert [r.seq for r in taken.readings] == list(range(6, 23))


async def test_a_follower_cancelled_while_reading_back_loses_nothing() -> None:
    reading_back, release = asyncio.Event(), asyncio.Event()

    async def read_back(after: int, upto: int, limit: int) -> list[Reading]:
        reading_back.set()
        await release.wait()
        return [reading(s) for s in range(after + 1, upto + 1)][:limit]

    feed = Feed(head=10)
    follower = feed.follow(0, read_back)
    task = asyncio.create_task(follower.take())
    await asyncio.wait_for(reading_back.wait(), 5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    release.set()
    taken = await follower.take()
    assert taken is not None
    assert [r.seq for r in taken.readings] == list(range(1, 11))


def test_a_commit_out_of_order_is_refused() -> None:
    feed = Feed(head=5)
    with pytest.raises(ValueError, match="follows head"):
        feed.committed(entry(3, 7))


# -- the live path ---------------------------------------------------------------


async def test_subscribers_get_each_commit_once_in_order_and_only_their_devices() -> None:
    store = FakeStore()
    async with live_path(store) as (live, server, _):
        await live.subscribe("all", Subscription.of(["*"]))
        await live.subscribe("d2", Subscription.of(["d2"]))
        for n in range(20):
            await store.write(batch("d1" if n % 2 else "d2", 3, 3 * n))
        await wait_until(lambda: live.head == store.head, 5, "the last commit")
        assert server.seqs("all") == list(range(1, 61))
        assert server.seqs("d2") == [
            s for n in range(0, 20, 2) for s in range(3 * n + 1, 3 * n + 4)
        ]


async def test_a_reading_committed_during_a_replay_arrives_exactly_once() -> None:
    store = FakeStore()
    await fill(store, 100)
    store.read_gate = asyncio.Event()
    async with live_path(store) as (live, server, _):
        _subscription, head = await live.subscribe(
            "back", Subscription.of(["*"]), Cursor(store.epoch, 40)
        )
        assert head == 100
        for n in range(10):  # committed while the replay waits for the store
            await store.write(batch("d1", 5, 1000 + 5 * n))
        await wait_until(lambda: live.head == store.head, 5, "the commits")
        store.read_gate.set()
        await live.replay_over("back")
        await store.write(batch("d1", 1, 2000))
        await wait_until(lambda: server.seqs("back")[-1:] == [store.head], 5, "the next reading")
    assert server.seqs("back") == list(range(41, 152))
    replays = server.events("back", "replay")
    assert [(r["state"], r["from"], r["to"]) for r in replays] == [
        ("start", 40, 100),
        ("end", 40, 100),
    ]


async def test_the_handover_under_concurrent_commits_skips_and_repeats_nothing() -> None:
    store = FakeStore()
    await fill(store, 500, ("d1", "d2"))
    async with live_path(store) as (live, server, _):
        done = asyncio.Event()

        async def commit() -> None:
            n = 0
            while not done.is_set():
                await store.write(batch("d1" if n % 2 else "d2", 2, 10_000 + 2 * n))
                n += 1
                await asyncio.sleep(0)

        writing = asyncio.create_task(commit())
        boards = [f"b{n}" for n in range(5)]
        for n, sid in enumerate(boards):
            await live.subscribe(sid, Subscription.of(["*"]), Cursor(store.epoch, 100 * n))
        for sid in boards:
            await live.replay_over(sid)
        done.set()
        await writing
        await wait_until(lambda: live.head == store.head, 5, "the last commit")
        for n, sid in enumerate(boards):
            assert server.seqs(sid) == list(range(100 * n + 1, store.head + 1)), sid


async def test_presence_reaches_a_client_while_its_history_is_replayed() -> None:
    store = FakeStore()
    await fill(store, 10)
    store.read_gate = asyncio.Event()
    async with live_path(store) as (live, server, _):
        await live.subscribe("back", Subscription.of(["d1"]), Cursor(store.epoch, 0))
        await store.write(WriteBatch(presence=(PresenceChange("d1", True, T0),)))
        await store.write(WriteBatch(presence=(PresenceChange("d9", True, T0),)))  # not its device
        await wait_until(lambda: bool(server.events("back", "presence")), 5, "the presence")
        assert server.events("back", "presence") == [
            {"device_id": "d1", "online": True, "last_seen": T0}
        ]
        assert server.seqs("back") == []  # the replay still waits
        store.read_gate.set()
        await live.replay_over("back")
    assert server.seqs("back") == list(range(1, 11))


async def test_a_cursor_further_behind_than_the_backlog_gets_a_gap_then_live() -> None:
    store = FakeStore()
    await fill(store, 50)
    async with live_path(store, replay={"max_backlog": 20}) as (live, server, _):
        await live.subscribe("far", Subscription.of(["*"]), Cursor(store.epoch, 10))
        await live.replay_over("far")
        await store.write(batch("d1", 1, 100))
        await wait_until(lambda: server.seqs("far") == [51], 5, "the live reading")
    assert server.events("far", "gap") == [{"from": 10, "to": 50, "reason": "backlog"}]
    assert server.events("far", "replay") == []


async def test_a_cursor_of_another_epoch_gets_a_gap() -> None:
    store = FakeStore()
    await fill(store, 5)
    async with live_path(store) as (live, server, _):
        await live.subscribe("old", Subscription.of(["*"]), Cursor("another", 3))
        await live.replay_over("old")
    assert server.events("old", "gap") == [{"from": 3, "to": 5, "reason": "epoch"}]
    assert server.seqs("old") == []


async def test_a_lagging_client_leaves_its_room_and_is_caught_up_once_it_drains() -> None:
    store = FakeStore()
    async with live_path(store, lag_max=50) as (live, server, engine):
        await live.subscribe("slow", Subscription.of(["*"]))
        await store.write(batch("d1", 10))
        await wait_until(lambda: server.seqs("slow") == list(range(1, 11)), 5, "the first frame")
        engine.waiting["slow"] = 51  # its connection stopped taking frames
        await store.write(batch("d1", 10, 10))
        await wait_until(lambda: live.lagging == 1, 5, "the lagging client")
        assert live.clients == 0
        for n in range(5):
            await store.write(batch("d1", 10, 20 + 10 * n))
        await wait_until(lambda: live.head == store.head, 5, "the commits")
        assert server.seqs("slow") == list(range(1, 11))  # nothing more while lagging
        engine.waiting["slow"] = 0  # drained
        await wait_until(lambda: live.clients == 1, 5, "the client back in its room")
        await store.write(batch("d1", 1, 100))
        await wait_until(lambda: server.seqs("slow")[-1:] == [store.head], 5, "the next reading")
    assert server.seqs("slow") == list(range(1, store.head + 1))


async def test_a_hold_past_its_bound_becomes_a_gap() -> None:
    store = FakeStore()
    await fill(store, 5)
    store.read_gate = asyncio.Event()
    async with live_path(store, hold_max=10) as (live, server, _):
        await live.subscribe("back", Subscription.of(["*"]), Cursor(store.epoch, 0))
        await store.write(batch("d1", 6, 100))
        await store.write(batch("d1", 6, 200))  # 12 held: more than hold_max
        await wait_until(lambda: live.head == store.head, 5, "the commits")
        store.read_gate.set()
        await live.replay_over("back")
        await store.write(batch("d1", 1, 300))
        await wait_until(lambda: server.seqs("back")[-1:] == [store.head], 5, "the next reading")
    assert server.events("back", "gap") == [{"from": 5, "to": 17, "reason": "overflow"}]
    assert server.seqs("back") == [1, 2, 3, 4, 5, 18]


async def test_a_quiet_hub_flushes_at_once_and_a_busy_one_waits_its_interval() -> None:
    store = FakeStore()
    async with live_path(store, tick=0.02, frame_rate=100.0) as (live, _, _):
        for n in range(3):
            await live.subscribe(f"b{n}", Subscription.of(["*"]))
        assert live.interval() == pytest.approx(0.02)  # 3 clients / 100 frames a second: capped
    async with live_path(store, tick=0.02, frame_rate=5000.0) as (live, _, _):
        for n in range(10):
            await live.subscribe(f"b{n}", Subscription.of(["*"]))
        assert live.interval() == pytest.approx(0.002)


async def test_a_mass_disconnect_is_paced_superseded_and_readings_keep_flowing() -> None:
    """10,000 devices go offline in one commit: presence goes out at most
    `presence_rate` a second, the readings committed meanwhile are not held
    behind it, and a device back online before its turn is sent once, online,
    in the place of its latest change."""
    store = FakeStore()
    devices = [f"d{i:05d}" for i in range(10_000)]
    back = devices[8_000]
    async with live_path(store, presence_rate=5_000) as (live, server, _):
        await live.subscribe("all", Subscription.of(["*"]))
        await store.write(WriteBatch(presence=tuple(PresenceChange(d, False, T0) for d in devices)))
        await wait_until(lambda: bool(server.events("all", "presence")), 5, "the first changes")
        assert len(server.events("all", "presence")) <= 500  # 0.1 s worth at most
        await store.write(WriteBatch(presence=(PresenceChange(back, True, T0 + 5),)))
        await store.write(batch("d00007", 1))
        await wait_until(lambda: bool(server.seqs("all")), 5, "the reading")
        assert live.presence_waiting > 5_000  # the reading did not wait behind them
        await wait_until(lambda: live.presence_waiting == 0, 10, "every presence change")
    sent = server.events("all", "presence")
    assert [p["device_id"] for p in sent] == [d for d in devices if d != back] + [back]
    assert sent[-1] == {"device_id": back, "online": True, "last_seen": T0 + 5}
