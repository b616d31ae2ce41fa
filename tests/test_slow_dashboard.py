"""A dashboard that stops taking frames is not fed without bound: the hub
takes it out of its room, and replay brings it back up to date when it
drains, with nothing missed or repeated."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from hub.config import Settings
from tests.hubs import RunningHub, serve_hub, wait_until
from tests.test_replay import post_many, stored_seqs

RECORD_SEPARATOR = "\x1e"


class PollingDashboard:
    """Engine.IO long-polling by hand, so the test decides when to poll."""

    def __init__(self, running: RunningHub, http: aiohttp.ClientSession) -> None:
        self.base = f"{running.url}/socket.io/?EIO=4&transport=polling"
        self.http = http
        self.sid = ""
        self.events: list[tuple[str, Any]] = []

    async def open(self) -> None:
        async with self.http.get(self.base) as response:
            opened = json.loads((await response.text())[1:])
        self.sid = opened["sid"]
        await self.send("40/dashboard,{}")
        await self.poll()
        await self.send('42/dashboard,1["subscribe",{"devices":["*"]}]')
        await self.poll()

    async def send(self, packet: str) -> None:
        async with self.http.post(f"{self.base}&sid={self.sid}", data=packet) as response:
            assert response.status == 200

    async def poll(self) -> int:
        async with self.http.get(f"{self.base}&sid={self.sid}") as response:
            body = await response.text()
        packets = body.split(RECORD_SEPARATOR)
        for packet in packets:
            if packet == "2":  # ping
                await self.send("3")
            elif packet.startswith("42/dashboard,"):
                name, data = json.loads(packet[len("42/dashboard,") :])
                self.events.append((name, data))
        return len(packets)

    def seqs(self) -> list[int]:
        return [
            r["seq"] for name, data in self.events if name == "readings" for r in data["readings"]
        ]


async def test_a_stalled_dashboard_is_taken_out_then_healed_by_replay(
    settings: Settings,
) -> None:
    async with serve_hub(settings) as running, aiohttp.ClientSession() as http:
        board = PollingDashboard(running, http)
        await board.open()
        # it stops polling; every commit makes one frame for it
        for i in range(120):
            await post_many(running, 1, ("busy",), start=i)
        await wait_until(lambda: running.hub.live.lagging == 1, 5, "the lagging client")
        for i in range(120, 200):  # not queued for it any more
            await post_many(running, 1, ("busy",), start=i)
        # Nothing more is committed from here until its replay is over: it
        # drains its queue and must be resumed without a new reading to wake
        # the live path, once that has sent everything committed.
        hub = running.hub
        await wait_until(lambda: hub.live.head == hub.store.head, 5, "the last frame")

        def replayed() -> bool:
            return any(name == "replay" and data["state"] == "end" for name, data in board.events)

        async def until_replayed() -> None:
            while not replayed():
                await board.poll()

        # it polls again: what was queued, then a replay of the rest, then live
        await asyncio.wait_for(until_replayed(), 10)
        await post_many(running, 1, ("busy",), start=500)
        while board.seqs()[-1:] != stored_seqs(settings, 0)[-1:]:
            await board.poll()
        assert board.seqs() == stored_seqs(settings, 0)
        replays = [data for name, data in board.events if name == "replay"]
        assert [r["state"] for r in replays] == ["start", "end"]
        assert running.hub.metrics.value("hub_dashboards_lagging_total") == 1
