"""The official JavaScript socket.io-client, run by node, as a dashboard."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from hub.config import Settings
from tests.brokers import Mosquitto
from tests.hubs import serve_hub
from tests.test_e2e import post, publish

SCRIPT = Path(__file__).parent / "js" / "dashboard.cjs"
CLIENT = Path(__file__).parents[1] / "web" / "node_modules" / "socket.io-client"


@pytest.fixture(autouse=True)
def _node_and_client() -> None:
    # make test installs both; a clear failure beats a confusing one.
    assert shutil.which("node"), "node is not installed"
    assert CLIENT.is_dir(), "run `npm ci --prefix web` (make test does)"


async def read_event(process: asyncio.subprocess.Process) -> dict[str, Any]:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 20)
    assert line, "the node client exited early"
    event: dict[str, Any] = json.loads(line)
    return event


@pytest.mark.parametrize("transports", ["websocket", "polling"])
async def test_the_javascript_client_receives_readings(
    settings: Settings, mosquitto: Mosquitto, transports: str
) -> None:
    async with serve_hub(settings) as running:
        node = await asyncio.create_subprocess_exec(
            "node", str(SCRIPT), running.url, transports, "2", stdout=asyncio.subprocess.PIPE
        )
        try:
            subscribed = await read_event(node)
            assert subscribed["event"] == "subscribed"
            assert subscribed["transport"] == transports
            assert subscribed["ack"] == {
                "epoch": running.hub.store.epoch,
                "seq": 0,
                "devices": ["*"],
            }
            ts = int(time.time() * 1000)
            await publish(
                mosquitto,
                "devices/js-1/telemetry",
                f'{{"ts": {ts}, "values": {{"temperature": 25}}}}',
            )
            await post(
                running, "js-2", f'{{"ts": {ts}, "pressure": {{"value": 1, "unit": "bar"}}}}'
            )
            readings: list[dict[str, Any]] = []
            while len(readings) < 2:
                event = await read_event(node)
                if event["event"] == "readings":
                    assert event["epoch"] == running.hub.store.epoch
                    assert event["replay"] is False
                    readings.extend(event["readings"])
            assert await asyncio.wait_for(node.wait(), 10) == 0
        finally:
            if node.returncode is None:
                node.kill()
                await node.wait()
        assert [
            (r["device_id"], r["metric"], r["value"], r["unit"], r["ts"]) for r in readings
        ] == [
            ("js-1", "temperature", 25.0, "Cel", ts),
            ("js-2", "pressure", 100000.0, "Pa", ts),
        ]
        assert readings[0]["seq"] < readings[1]["seq"]


REPLAYING = Path(__file__).parent / "js" / "replaying.cjs"


async def events_until(process: asyncio.subprocess.Process, name: str) -> list[dict[str, Any]]:
    seen = []
    while True:
        event = await read_event(process)
        seen.append(event)
        if event["event"] == name:
            return seen


@pytest.mark.parametrize("transports", ["websocket", "polling"])
async def test_the_javascript_client_replays_what_it_missed(
    settings: Settings, transports: str
) -> None:
    from tests.test_replay import post_many, stored_seqs

    async with serve_hub(settings) as running:
        await post_many(running, 5)
        cursor = running.hub.store.head
        await post_many(running, 400, ("a", "b"), start=5)
        node = await asyncio.create_subprocess_exec(
            "node",
            str(REPLAYING),
            running.url,
            transports,
            running.hub.store.epoch,
            str(cursor),
            "400",
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert node.stdout is not None
            output, _ = await asyncio.wait_for(node.communicate(), 30)
            assert node.returncode == 0, output
            events = [json.loads(line) for line in output.splitlines()]
        finally:
            if node.returncode is None:
                node.kill()
                await node.wait()
        replays = [e for e in events if e["event"] == "replay"]
        assert [r["state"] for r in replays] == ["start", "end"]
        assert replays[0]["count"] == 400
        seqs = [r["seq"] for e in events if e["event"] == "readings" for r in e["readings"]]
        assert seqs == stored_seqs(settings, cursor)
        assert all(e["replay"] for e in events if e["event"] == "readings")


async def test_the_javascript_client_survives_a_hub_restart(
    settings: Settings, mosquitto: Mosquitto
) -> None:
    from tests.test_replay import stored_seqs

    async with serve_hub(settings) as running:
        port = running.port
        node = await asyncio.create_subprocess_exec(
            "node",
            str(REPLAYING),
            running.url,
            "websocket",
            "",
            "0",
            "50",
            stdout=asyncio.subprocess.PIPE,
        )
        await events_until(node, "subscribed")
        for i in range(20):
            await publish(mosquitto, "devices/js/telemetry", f'{{"seq": {i}, "n": {i}}}')
        before = await seqs_received(node, 20)
    try:
        # The hub is down; the broker keeps these for the hub's session.
        for i in range(20, 35):
            await publish(mosquitto, "devices/js/telemetry", f'{{"seq": {i}, "n": {i}}}')
        async with serve_hub(settings, port=port):
            await events_until(node, "subscribed")
            for i in range(35, 50):
                await publish(mosquitto, "devices/js/telemetry", f'{{"seq": {i}, "n": {i}}}')
            after = await seqs_received(node, 30)
            assert await asyncio.wait_for(node.wait(), 20) == 0
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()
    assert before + after == stored_seqs(settings, 0)


async def seqs_received(process: asyncio.subprocess.Process, count: int) -> list[int]:
    got: list[int] = []
    while len(got) < count:
        event = await read_event(process)
        if event["event"] == "readings":
            got += [r["seq"] for r in event["readings"]]
    return got
