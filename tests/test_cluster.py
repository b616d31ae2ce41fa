"""Several hubs on one PostgreSQL database and one Mosquitto broker with a
shared subscription, each served for real on its own port, in one process:
ingest is split between them, and every dashboard on every hub gets every
reading once, in seq order; a cursor from one hub replays on another."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import aiomqtt
import orjson
import pytest

from tests.brokers import Mosquitto
from tests.hubs import RunningHub, dashboard, hub_settings, serve_hub, wait_until
from tests.test_commands import admin, command, socketio_device, with_admin

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def cluster(
    tmp_path: Path, broker: Mosquitto, url: str, hubs: int = 3
) -> AsyncIterator[list[RunningHub]]:
    async with contextlib.AsyncExitStack() as stack:
        running = []
        for n in range(hubs):
            base = with_admin(hub_settings(tmp_path / f"hub-{n}", broker.url))
            settings = replace(
                base,
                storage=replace(base.storage, url=url),
                mqtt=replace(base.mqtt, client_id=f"cluster-hub-{n}", shared_group="hubs"),
                cluster=replace(base.cluster, node_id=f"hub-{n}"),
            )
            running.append(await stack.enter_async_context(serve_hub(settings)))
        yield running


async def publish_numbered(broker: Mosquitto, devices: int, messages: int, first: int = 0) -> None:
    """`messages` per device, device seqs from `first`, at QoS 1."""
    now = int(time.time() * 1000)
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=f"pub-{time.time_ns()}") as c:
        for n in range(first, first + messages):
            for d in range(devices):
                body = orjson.dumps({"seq": n, "ts": now + n, "values": {"t": n}})
                await c.publish(f"devices/dev-{d}/telemetry", body, qos=1)


async def test_every_dashboard_on_every_hub_gets_every_reading_once_in_order(
    tmp_path: Path, mosquitto: Mosquitto, postgres_url: str
) -> None:
    async with (
        cluster(tmp_path, mosquitto, postgres_url) as hubs,
        contextlib.AsyncExitStack() as stack,
    ):
        boards = []
        for running in hubs:
            for transports in (["websocket"], ["polling"]):
                board = await stack.enter_async_context(dashboard(running.url, transports))
                await board.subscribe(["*"])
                boards.append(board)
        await publish_numbered(mosquitto, devices=4, messages=50)
        for board in boards:
            await board.wait_readings(200, within=30)
        first = [(r["seq"], r["device_id"], r["value"]) for r in boards[0].readings]
        assert len(first) == 200
        assert [seq for seq, _, _ in first] == sorted({seq for seq, _, _ in first})
        for board in boards[1:]:
            assert [(r["seq"], r["device_id"], r["value"]) for r in board.readings] == first
        # the broker split the messages: every hub stored some
        stored = [h.hub.metrics.value("hub_readings_stored_total", source="mqtt") for h in hubs]
        assert sum(stored) == 200
        assert all(n > 0 for n in stored), stored


async def test_a_cursor_from_one_hub_replays_on_another(
    tmp_path: Path, mosquitto: Mosquitto, postgres_url: str
) -> None:
    async with cluster(tmp_path, mosquitto, postgres_url, hubs=2) as (a, b):
        async with dashboard(a.url, ["websocket"]) as board:
            await board.subscribe(["*"])
            await publish_numbered(mosquitto, devices=2, messages=10)
            await board.wait_readings(20)
            cursor = board.cursor()
            seen = list(board.readings)
        await publish_numbered(mosquitto, devices=2, messages=10, first=10)  # missed
        stored_by = [a.hub.metrics, b.hub.metrics]
        await wait_until(
            lambda: (
                sum(m.value("hub_readings_stored_total", source="mqtt") for m in stored_by) == 40
            ),
            what="40 readings stored",
        )
        async with dashboard(b.url, ["polling"], auth=cursor) as moved:
            moved.epoch, moved.seq = cursor["cursor"]["epoch"], cursor["cursor"]["seq"]
            await moved.subscribe(["*"])
            await moved.wait_readings(20)
            replays = moved.named("replay")
            assert [r["state"] for r in replays][-1] == "end"
            missed = [(r["device_id"], r["value"]) for r in moved.readings]
            assert len(missed) == 20
            assert sorted(missed) == sorted(
                (f"dev-{d}", float(n)) for d in range(2) for n in range(10, 20)
            )
            seqs = [r["seq"] for r in moved.readings]
            assert seqs == sorted(set(seqs))
            assert seqs[0] > seen[-1]["seq"]


async def test_presence_and_readyz_name_the_node(
    tmp_path: Path, mosquitto: Mosquitto, postgres_url: str
) -> None:
    async with cluster(tmp_path, mosquitto, postgres_url, hubs=2) as (a, b):
        async with dashboard(b.url, ["websocket"]) as board:
            await board.subscribe(["*"])
            # a device comes online over MQTT: whichever hub stores it, b's dashboard hears
            await publish_numbered(mosquitto, devices=1, messages=1)
            await wait_until(
                lambda: any(p.get("device_id") == "dev-0" and p["online"] for p in board.presence),
                what="presence",
            )
        async with aiohttp.ClientSession() as session:
            async with session.get(a.url + "/readyz") as response:
                body = await response.json()
            assert body["node"] == "hub-0"
            assert body["store"]["url"] == postgres_url
            async with session.get(b.url + "/metrics") as response:
                assert 'hub_node_info{node="hub-1"} 1' in await response.text()


async def test_a_command_reaches_a_device_connected_to_another_hub(
    tmp_path: Path, mosquitto: Mosquitto, postgres_url: str
) -> None:
    async with (
        cluster(tmp_path, mosquitto, postgres_url, hubs=2) as (a, b),
        socketio_device(b, "dev-far"),
        admin(a) as client,
    ):
        answer = await command(client, device_id="dev-far", name="ping", args={"x": 1})
        assert answer == {"id": answer["id"], "ok": True, "result": {"echo": {"x": 1}}}
        failed = await command(client, device_id="dev-far", name="fail", args={})
        assert (failed["ok"], failed["error"]) == (False, "cannot")
        # no hub holds this one: offline, after the relay's wait for a taker
        started = time.monotonic()
        nowhere = await command(client, device_id="dev-nowhere", name="ping", args={})
        assert nowhere["error"] == "offline"
        assert time.monotonic() - started < 5
        records = await a.hub.store.commands("dev-far", 10)
        assert sorted((r.name, r.link, r.outcome) for r in records) == [
            ("fail", "socketio", "error"),
            ("ping", "socketio", "ok"),
        ]
