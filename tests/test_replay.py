"""Cursor replay on reconnect: exactly the missed readings, in order, at a
bounded rate, then live; gaps said plainly."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest

from hub.config import ReplaySettings, Settings
from tests.brokers import Mosquitto
from tests.hubs import Dashboard, RunningHub, dashboard, hub_settings, serve_hub, wait_until
from tests.test_e2e import post, publish

TRANSPORTS = [["websocket"], ["polling"]]


async def post_many(
    running: RunningHub, count: int, devices: tuple[str, ...] = ("r1",), start: int = 0
) -> None:
    """`count` readings, spread over `devices`, as batches of 500 per request."""
    now = int(time.time() * 1000)
    for first in range(0, count, 500):
        per_device: dict[str, list[str]] = {}
        for i in range(first, min(count, first + 500)):
            device = devices[i % len(devices)]
            per_device.setdefault(device, []).append(
                f'{{"ts": {now}, "seq": {start + i}, "values": {{"n": {start + i}}}}}'
            )
        for device, envelopes in per_device.items():
            status, _ = await post(running, device, "[" + ",".join(envelopes) + "]")
            assert status == 202


def cursor_now(running: RunningHub) -> dict[str, Any]:
    """A dashboard's auth for "I have everything up to now"."""
    store = running.hub.store
    return {"cursor": {"epoch": store.epoch, "seq": store.head}}


@asynccontextmanager
async def hub_behind(
    settings: Settings, count: int, devices: tuple[str, ...] = ("r1",)
) -> AsyncIterator[tuple[RunningHub, dict[str, Any]]]:
    """A hub, and a dashboard cursor that `count` stored readings are past."""
    async with serve_hub(settings) as running:
        await post_many(running, 1)
        cursor = cursor_now(running)
        await post_many(running, count, devices, start=1)
        yield running, cursor


def stored_seqs(
    settings: Settings, after: int, devices: tuple[str, ...] | None = None
) -> list[int]:
    with sqlite3.connect(settings.storage.path) as db:
        rows = db.execute(
            "SELECT seq, device_id FROM readings WHERE seq > ? ORDER BY seq", (after,)
        ).fetchall()
    return [seq for seq, device in rows if devices is None or device in devices]


def seqs_of(board: Dashboard) -> list[int]:
    return [r["seq"] for r in board.readings]


def assert_exactly(board: Dashboard, expected: list[int]) -> None:
    got = seqs_of(board)
    assert len(got) == len(set(got)), "a seq arrived twice"
    assert got == sorted(got), "seqs arrived out of order"
    assert got == expected


async def settled(running: RunningHub, board: Dashboard, device: str) -> int:
    """One more reading of `device` (one the board is subscribed to), waited
    for: once it is there, everything sent to the board before it is there
    too, a late duplicate included (a dashboard gets its readings in seq
    order). Its seq, to add to what the board is expected to hold."""
    status, _ = await post(running, device, '{"values": {"settled": 1}}')
    assert status == 202
    seq = running.hub.store.head
    await wait_until(lambda: seq in seqs_of(board), what=f"the settling reading {seq}")
    return seq


@pytest.mark.parametrize("transports", TRANSPORTS, ids=["websocket", "polling"])
async def test_a_returning_dashboard_gets_exactly_what_it_missed(
    settings: Settings, transports: list[str]
) -> None:
    async with serve_hub(settings) as running:
        async with dashboard(running.url, transports) as before:
            await before.subscribe(["*"])
            await post_many(running, 10)
            await before.wait_readings(10)
            cursor = before.cursor()
        await post_many(running, 700, ("r1", "r2", "r3"), start=10)
        # The last commit reaches the rooms at the next broadcast tick; from
        # then on all 700 are history, to be replayed, none live.
        hub = running.hub
        await wait_until(lambda: hub.live.head == hub.store.head, what="the broadcast")
        async with dashboard(running.url, transports, auth=cursor) as after:
            ack = await after.subscribe(["*"])
            assert ack["seq"] == running.hub.store.head
            await after.wait_readings(700)
            await wait_until(lambda: len(after.named("replay")) == 2, what="the replay's end")
            [start, end] = after.named("replay")
            assert start == {
                "state": "start",
                "from": cursor["cursor"]["seq"],
                "to": ack["seq"],
                "count": 700,
            }
            assert end["state"] == "end"
            assert end["count"] == 700
            assert all(frame["replay"] for frame in after.frames)
            await post_many(running, 5, start=710)
            await after.wait_readings(705)
            assert [f["replay"] for f in after.frames][-1] is False
            assert_exactly(after, stored_seqs(settings, cursor["cursor"]["seq"]))
            assert after.named("gap") == []


async def test_readings_committed_during_the_replay_are_neither_lost_nor_repeated(
    tmp_path: Any, mosquitto: Mosquitto
) -> None:
    settings = _with(tmp_path, mosquitto, rate=1500, burst=200, page_size=100)
    async with hub_behind(settings, 3000, ("a", "b")) as (running, cursor):

        async def live_traffic() -> None:
            for i in range(40):
                await post(running, "live", f'{{"seq": {i}, "values": {{"n": {i}}}}}')
                await asyncio.sleep(0.05)

        async with dashboard(running.url, auth=cursor) as board:
            traffic = asyncio.create_task(live_traffic())
            await board.subscribe(["*"])
            await traffic
            expected = stored_seqs(settings, cursor["cursor"]["seq"])
            await board.wait_readings(len(expected), within=20)
            expected.append(await settled(running, board, "live"))
            assert_exactly(board, expected)
            await wait_until(lambda: len(board.named("replay")) == 2, what="the replay's end")
            [start, end] = board.named("replay")
            assert start["count"] >= 3000
            assert end["count"] == len(expected) - len(
                [r for r in board.readings if r["seq"] > end["to"]]
            )


async def test_presence_changes_reach_a_dashboard_during_its_replay(
    tmp_path: Any, mosquitto: Mosquitto
) -> None:
    """A device going online while a dashboard's history is replayed (3 s at
    1,000 readings/s here) is shown at once, not lost: presence is the state
    now, not part of the history."""
    settings = _with(tmp_path, mosquitto, rate=1000, burst=100, page_size=100)
    async with (
        hub_behind(settings, 3000) as (running, cursor),
        dashboard(running.url, auth=cursor) as board,
    ):
        await board.subscribe(["*"])
        await wait_until(lambda: len(board.named("replay")) >= 1, what="the replay's start")
        await publish(mosquitto, "devices/radio/status", "online", retain=True)
        await wait_until(
            lambda: any(p["device_id"] == "radio" for p in board.presence),
            what="radio's presence",
        )
        assert len(board.named("replay")) == 1, "presence waited for the replay's end"
        assert board.presence[-1]["online"] is True
        await board.wait_readings(3000, within=20)


async def test_the_replay_rate_is_honoured(tmp_path: Any, mosquitto: Mosquitto) -> None:
    settings = _with(tmp_path, mosquitto, rate=1000, burst=100, page_size=100)
    async with (
        hub_behind(settings, 3000) as (running, cursor),
        dashboard(running.url, auth=cursor) as board,
    ):
        started = time.monotonic()
        await board.subscribe(["*"])
        await board.wait_readings(3000, within=20)
        took = time.monotonic() - started
    # 100 at once (the burst), then 2,900 at 1,000/s: 2.9 s, plus overheads.
    assert 2.6 <= took <= 5.0, f"3000 readings at 1000/s took {took:.2f} s"


async def test_only_subscribed_devices_are_replayed(settings: Settings) -> None:
    async with serve_hub(settings) as running:
        async with dashboard(running.url) as first:
            await first.subscribe(["x"])
            await post(running, "x", '{"n": 0}')
            await first.wait_readings(1)
            cursor = first.cursor()
        await post_many(running, 300, ("x", "y", "z"), start=1)
        async with dashboard(running.url, auth=cursor) as board:
            await board.subscribe(["x", "z"])
            expected = stored_seqs(settings, cursor["cursor"]["seq"], ("x", "z"))
            await board.wait_readings(len(expected))
            expected.append(await settled(running, board, "z"))
            assert_exactly(board, expected)
            assert {r["device_id"] for r in board.readings} == {"x", "z"}


async def test_a_cursor_from_another_epoch_gets_a_gap_then_live(settings: Settings) -> None:
    async with serve_hub(settings) as running:
        await post_many(running, 20)
        head = running.hub.store.head
        async with dashboard(running.url, auth={"cursor": {"epoch": "gone", "seq": 5}}) as board:
            await board.subscribe(["*"])
            await wait_until(lambda: bool(board.named("gap")))
            assert board.named("gap") == [{"from": 5, "to": head, "reason": "epoch"}]
            await post(running, "r1", '{"n": 99}')
            [reading] = await board.wait_readings(1)
            assert reading["seq"] > head
            assert board.named("replay") == []


async def test_a_backlog_beyond_the_limit_is_a_gap(tmp_path: Any, mosquitto: Mosquitto) -> None:
    settings = _with(tmp_path, mosquitto, max_backlog=100, page_size=50)
    async with hub_behind(settings, 150) as (running, cursor):
        head = running.hub.store.head
        async with dashboard(running.url, auth=cursor) as board:
            await board.subscribe(["*"])
            await wait_until(lambda: bool(board.named("gap")))
            assert board.named("gap") == [
                {"from": cursor["cursor"]["seq"], "to": head, "reason": "backlog"}
            ]
            await post(running, "r1", '{"n": 1}')
            [reading] = await board.wait_readings(1)
            assert reading["seq"] > head


async def test_what_retention_deleted_is_a_gap_and_the_rest_is_replayed(
    tmp_path: Any, mosquitto: Mosquitto
) -> None:
    settings = _with(tmp_path, mosquitto)
    settings = replace(settings, storage=replace(settings.storage, retention=3600.0))
    async with serve_hub(settings) as running:
        two_hours_ago = int(time.time() * 1000) - 7_200_000
        old = ",".join(f'{{"ts": {two_hours_ago + i}, "values": {{"n": {i}}}}}' for i in range(50))
        await post(running, "old", f"[{old}]")
        await wait_until(lambda: running.hub.store.purged_through > 0, 10, "a retention step")
        purged = running.hub.store.purged_through
        await post_many(running, 30, start=100)
        async with dashboard(
            running.url, auth={"cursor": {"epoch": running.hub.store.epoch, "seq": 0}}
        ) as board:
            await board.subscribe(["*"])
            await board.wait_readings(30)
            assert board.named("gap") == [{"from": 0, "to": purged, "reason": "retention"}]
            assert_exactly(board, stored_seqs(settings, purged))


async def test_concurrent_replays_are_bounded_and_all_complete(
    tmp_path: Any, mosquitto: Mosquitto
) -> None:
    settings = _with(tmp_path, mosquitto, rate=2000, burst=200, page_size=100, max_concurrent=2)
    async with hub_behind(settings, 600) as (running, cursor):
        expected = stored_seqs(settings, cursor["cursor"]["seq"])
        most_active = 0

        async def watch() -> None:
            nonlocal most_active
            while True:
                most_active = max(most_active, running.hub.live.replay.active)
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        boards = [dashboard(running.url, auth=cursor) for _ in range(6)]
        entered = [await board.__aenter__() for board in boards]
        try:
            acks = await asyncio.gather(*(b.subscribe(["*"]) for b in entered))
            await wait_until(
                lambda: running.hub.live.replays > running.hub.live.replay.active,
                5,
                "a queued replay",
            )
            # live traffic while some wait for a slot: held for them, not replayed
            await post_many(running, 50, ("live",), start=1000)
            expected = stored_seqs(settings, cursor["cursor"]["seq"])
            for board in entered:
                await board.wait_readings(len(expected), within=30)
            watcher.cancel()
            for board, ack in zip(entered, acks, strict=True):
                assert_exactly(board, expected)
                await wait_until(lambda b=board: len(b.named("replay")) == 2)  # type: ignore[misc]
                start, end = board.named("replay")
                # the history ends where the client subscribed, however long it waited
                assert (start["to"], end["to"], end["count"]) == (ack["seq"], ack["seq"], 600)
            assert most_active == 2
        finally:
            for board in boards:
                await board.__aexit__(None, None, None)


async def test_a_big_hold_is_handed_over_in_order(tmp_path: Any, mosquitto: Mosquitto) -> None:
    settings = _with(tmp_path, mosquitto, rate=500, burst=100, page_size=100, max_concurrent=1)
    async with serve_hub(settings) as running:
        await post_many(running, 5)
        cursor = cursor_now(running)
        await post_many(running, 1000, start=5)
        async with (
            dashboard(running.url, auth=cursor) as first,
            dashboard(running.url, auth=cursor) as second,
        ):
            await first.subscribe(["*"])
            await second.subscribe(["*"])  # waits for the only slot
            await post_many(running, 12_000, ("busy", "busier"), start=2000)
            expected = stored_seqs(settings, cursor["cursor"]["seq"])
            for board in (first, second):
                await board.wait_readings(len(expected), within=40)
            expected.append(await settled(running, first, "busy"))
            await wait_until(lambda: expected[-1] in seqs_of(second))
            for board in (first, second):
                assert_exactly(board, expected)
                assert board.named("gap") == []


async def test_a_hold_that_overflows_is_a_gap_then_live(
    tmp_path: Any, mosquitto: Mosquitto
) -> None:
    settings = _with(tmp_path, mosquitto, rate=100, burst=10, page_size=10, max_backlog=300)
    async with serve_hub(settings) as running:
        await post_many(running, 5)
        cursor = cursor_now(running)
        await post_many(running, 100, start=5)
        async with dashboard(running.url, auth=cursor) as board:
            ack = await board.subscribe(["*"])
            await post_many(running, 400, ("busy",), start=200)  # more than the hold keeps
            await wait_until(lambda: bool(board.named("gap")), 10, "the overflow gap")
            [gap] = board.named("gap")
            assert (gap["from"], gap["reason"]) == (ack["seq"], "overflow")
            assert gap["to"] >= running.hub.store.head - 1
            await post(running, "after", '{"n": 1}')
            await wait_until(lambda: board.readings[-1]["device_id"] == "after")
            history = [r["seq"] for r in board.readings if r["seq"] <= ack["seq"]]
            assert history == stored_seqs(settings, cursor["cursor"]["seq"])[:100]
            assert [r["seq"] for r in board.readings if r["seq"] > ack["seq"]] == [
                board.readings[-1]["seq"]
            ]


async def test_polling_only_hub_serves_live_and_replay_and_refuses_the_upgrade(
    tmp_path: Any, mosquitto: Mosquitto
) -> None:
    settings = _with(tmp_path, mosquitto)
    settings = replace(settings, server=replace(settings.server, transports=("polling",)))
    async with serve_hub(settings) as running:
        async with dashboard(running.url, ["polling", "websocket"]) as first:
            await first.subscribe(["*"])
            await post_many(running, 3)
            await first.wait_readings(3)
            # python-engineio's client tries the upgrade the hub's handshake
            # offers inside connect(), before it returns: it was refused
            assert first.client.eio.upgrades == ["websocket"]
            assert first.client.transport() == "polling"
            cursor = first.cursor()
        await post_many(running, 100, start=3)
        async with dashboard(running.url, ["polling", "websocket"], auth=cursor) as board:
            await board.subscribe(["*"])
            await board.wait_readings(100)
            assert_exactly(board, stored_seqs(settings, cursor["cursor"]["seq"]))
            assert board.client.transport() == "polling"


async def test_a_hub_restart_under_a_connected_dashboard_loses_nothing(
    settings: Settings, mosquitto: Mosquitto
) -> None:
    board_box: list[Dashboard] = []

    def auth() -> dict[str, Any]:
        return board_box[0].cursor() if board_box else {}

    async with serve_hub(settings) as running:
        port = running.port
        context = dashboard(running.url, ["websocket"], auth=auth, reconnection=True)
        board = await context.__aenter__()
        board_box.append(board)
        resubscribe = asyncio.Event()
        board.client.on("connect", lambda: resubscribe.set(), namespace="/dashboard")
        await board.subscribe(["*"])
        await post_many(running, 20)
        await board.wait_readings(20)
    try:
        # The hub is down: devices keep publishing; the broker queues for the hub.
        for i in range(30):
            await publish(mosquitto, "devices/during/telemetry", json.dumps({"seq": i, "n": i}))
        resubscribe.clear()
        async with serve_hub(settings, port=port) as running:
            await asyncio.wait_for(resubscribe.wait(), 15)
            await board.subscribe(["*"])  # a dashboard resubscribes on every connect
            for i in range(30, 40):
                await publish(mosquitto, "devices/during/telemetry", json.dumps({"seq": i, "n": i}))
            await board.wait_readings(60, within=20)
            await settled(running, board, "during")
            assert_exactly(board, stored_seqs(settings, 0))
            assert len(board.named("replay")) in (0, 2)
    finally:
        await context.__aexit__(None, None, None)


def _with(tmp_path: Any, mosquitto: Mosquitto, **replay: int) -> Settings:
    settings = hub_settings(tmp_path, mosquitto.url)
    return replace(settings, replay=replace(ReplaySettings(), **replay))
