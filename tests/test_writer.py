"""The writer's group commit: batches linger `commit_linger`, or
`commit_linger_busy` while devices send fast enough that their messages
would share a commit (and the pages it writes)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hub.config import NormalizeSettings
from hub.errors import HubBusy, HubClosing
from hub.metrics import Metrics
from hub.models import Normalized, PresenceChange, Reading, Source
from hub.normalize import Rules, normalize
from hub.presence import Presence
from hub.writer import PACE_DEVICES_MAX, DevicePace, Writer
from tests.fakes import FakeStore
from tests.hubs import wait_until

pytestmark = pytest.mark.unit

T0 = 1_795_000_000_000

LINGER_BUSY = 0.02  # s: sharing from 50 messages per second per device


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def second(pace: DevicePace, clock: Clock, rates: dict[str, int]) -> None:
    """One second of messages, at `rates` per device, in 100 steps."""
    for step in range(100):
        clock.now += 0.01
        due = {d: rate * (step + 1) // 100 - rate * step // 100 for d, rate in rates.items()}
        pace.count([d for d, n in due.items() for _ in range(n)])


def test_devices_sending_100_a_second_are_busy() -> None:
    clock = Clock()
    pace = DevicePace(LINGER_BUSY, clock)
    second(pace, clock, {f"d{n}": 100 for n in range(20)})
    second(pace, clock, {f"d{n}": 100 for n in range(20)})
    assert pace.busy
    assert abs(pace.sharing - 2.0) < 0.1  # each message finds two of its device's in 20 ms


def test_devices_sending_20_a_second_are_not_busy_however_many() -> None:
    clock = Clock()
    pace = DevicePace(LINGER_BUSY, clock)
    rates = {f"d{n}": 20 for n in range(500)}  # 10,000 messages a second in all
    second(pace, clock, rates)
    second(pace, clock, rates)
    assert not pace.busy
    assert abs(pace.sharing - 0.4) < 0.05


def test_a_quiet_spell_ends_the_busy_spell() -> None:
    clock = Clock()
    pace = DevicePace(LINGER_BUSY, clock)
    second(pace, clock, {"d1": 500})
    second(pace, clock, {"d1": 500})
    assert pace.busy
    clock.now += 2.5  # nothing for 2.5 s
    assert not pace.busy


def test_too_many_devices_to_count_are_not_busy() -> None:
    clock = Clock()
    pace = DevicePace(LINGER_BUSY, clock)
    pace.count([f"d{n}" for n in range(PACE_DEVICES_MAX + 1)] * 3)
    clock.now += 1.0
    pace.count(["d0"])
    assert not pace.busy


# -- the writer against a store in memory -------------------------------------


def message(device_id: str, body: str) -> Normalized:
    return normalize(
        body.encode(),
        device_id=device_id,
        source=Source.HTTP,
        received_ms=T0,
        rules=Rules.from_settings(NormalizeSettings()),
    )


class Published:
    """What the store's log handed on after each commit (what the live path
    follows)."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store

    @property
    def readings(self) -> list[Reading]:
        return [r for entry in self.store.log for r in entry.readings]

    @property
    def presence(self) -> list[PresenceChange]:
        return [p for entry in self.store.log for p in entry.presence]


def running(store: FakeStore, published: Published, **options: Any) -> Writer:
    return Writer(store, Presence(60_000), Metrics(), **options)


async def test_messages_are_acknowledged_once_committed_then_handed_on() -> None:
    store = FakeStore()
    published = Published(store)
    async with running(store, published) as writer:
        first = await writer.enqueue(Source.HTTP, T0, [message("d1", '{"a": 1, "b": 2}')], ["d1"])
        second = await writer.submit(Source.HTTP, T0, [message("d2", '{"a": 3}')], ["d2"])
        assert (await first).accepted == 2
        assert second.accepted == 1
    assert [(r.device_id, r.metric, r.value) for r in published.readings] == [
        ("d1", "a", 1.0),
        ("d1", "b", 2.0),
        ("d2", "a", 3.0),
    ]
    assert [r.seq for r in published.readings] == [1, 2, 3]
    assert {(c.device_id, c.online) for c in published.presence} == {("d1", True), ("d2", True)}


async def test_a_repeated_device_seq_is_counted_and_not_handed_on() -> None:
    store = FakeStore()
    published = Published(store)
    body = '{"seq": 7, "values": {"a": 1}}'
    async with running(store, published) as writer:
        assert (await writer.submit(Source.HTTP, T0, [message("d1", body)], ["d1"])).accepted == 1
        again = await writer.submit(Source.HTTP, T0, [message("d1", body)], ["d1"])
    assert (again.accepted, again.duplicates) == (0, 1)
    assert len(published.readings) == 1


async def test_a_rejected_value_is_kept_and_the_rest_stored() -> None:
    store = FakeStore()
    published = Published(store)
    async with running(store, published) as writer:
        outcome = await writer.submit(
            Source.HTTP, T0, [message("d1", '{"a": 1, "b": null}')], ["d1"]
        )
    assert (outcome.accepted, outcome.rejected) == (1, 1)
    assert outcome.reasons
    assert [r.device_id for r in store.rejected] == ["d1"]


async def test_a_store_that_refuses_holds_everything_and_devices_are_told_why() -> None:
    store = FakeStore(refuse="database or disk is full")
    published = Published(store)
    async with running(store, published) as writer:
        held = await writer.enqueue(Source.MQTT, T0, [message("m1", '{"a": 1}')], ["m1"])
        await wait_until(lambda: writer.failing is not None)
        with pytest.raises(HubBusy, match="full"):
            await writer.submit(Source.HTTP, T0, [message("h1", '{"a": 1}')], ["h1"], wait=False)
        assert not held.done()
        assert published.readings == []
        store.refuse = None  # the disk has room again
        assert (await held).accepted == 1
        assert writer.failing is None
    assert [r.device_id for r in published.readings] == ["m1"]


async def test_a_writer_stopped_by_an_unexpected_error_says_so() -> None:
    class Broken(FakeStore):
        async def write(self, batch: Any) -> Any:
            raise RuntimeError("a bug in a store")

    store = Broken()
    writer = running(store, Published(store))
    async with writer:
        held = await writer.enqueue(Source.MQTT, T0, [message("m1", '{"a": 1}')], ["m1"])
        await wait_until(lambda: writer.failing is not None, what="the writer's stop reported")
        assert "RuntimeError('a bug in a store')" in (writer.failing or "")
        with pytest.raises(HubBusy, match="the writer stopped"):
            await writer.submit(Source.HTTP, T0, [message("h1", '{"a": 1}')], ["h1"], wait=False)
        assert not held.done()
        with pytest.raises(RuntimeError, match="a bug in a store"):
            await writer.close()


async def test_a_full_queue_answers_busy_at_once() -> None:
    store = FakeStore(gate=asyncio.Event())
    published = Published(store)
    async with running(store, published, queue_max=2) as writer:
        # the first commit waits on the slow store; two more fill the queue
        futures = [
            await writer.enqueue(Source.MQTT, T0, [message("m1", f'{{"a": {n}}}')], ["m1"])
            for n in range(3)
        ]
        await wait_until(lambda: writer.backlog == 2)
        with pytest.raises(HubBusy, match="behind"):
            await writer.submit(Source.HTTP, T0, [message("h1", '{"a": 1}')], ["h1"], wait=False)
        assert store.gate is not None
        store.gate.set()
        assert [(await f).accepted for f in futures] == [1, 1, 1]


async def test_closing_commits_everything_already_queued() -> None:
    store = FakeStore()
    published = Published(store)
    writer = running(store, published)
    async with writer:
        futures = [
            await writer.enqueue(Source.MQTT, T0, [message("m1", f'{{"a": {n}}}')], ["m1"])
            for n in range(50)
        ]
    assert all(f.done() and f.result().accepted == 1 for f in futures)
    assert len(published.readings) == 50
    with pytest.raises(HubClosing):
        await writer.enqueue(Source.MQTT, T0, [message("m1", '{"a": 1}')], ["m1"])
