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
