"""telemetry-sim against the real hub: what it says it sent is what the store holds."""

from __future__ import annotations

import asyncio
import sqlite3
import sys

import pytest

from hub.config import Settings
from tests.brokers import Mosquitto
from tests.hubs import serve_hub, wait_until


def parse_summary(text: str) -> dict[str, float]:
    line = [line for line in text.splitlines() if line.startswith("sent=")][-1]
    pairs = (item.split("=", 1) for item in line.split() if "=" in item)
    return {key: float(value) for key, value in pairs}


@pytest.mark.parametrize("protocol", ["mqtt", "socketio", "http"])
async def test_the_simulator_sends_what_it_says(
    settings: Settings, mosquitto: Mosquitto, protocol: str
) -> None:
    async with serve_hub(settings) as running:
        sim = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "devices.sim",
            "--devices",
            "3",
            "--rate",
            "10",
            "--duration",
            "2",
            "--protocol",
            protocol,
            "--broker",
            mosquitto.url,
            "--hub",
            running.url,
            "--metrics",
            "temperature,humidity,pressure",
            "--id-prefix",
            f"sim-{protocol}",
            "--quiet",
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(sim.communicate(), 30)
        assert sim.returncode == 0, out
        summary = parse_summary(out.decode())
        assert summary["sent"] == summary["acknowledged"] >= 50
        assert summary["errors"] == 0
        assert summary["readings"] == summary["sent"] * 3

        def stored() -> int:
            with sqlite3.connect(settings.storage.path) as db:
                (count,) = db.execute(
                    "SELECT count(*) FROM readings WHERE device_id LIKE ?", (f"sim-{protocol}-%",)
                ).fetchone()
                return int(count)

        await wait_until(lambda: stored() >= summary["readings"], 10, "the simulator's readings")
    # the hub's stop drains what it received: anything extra would be counted
    assert stored() == summary["readings"]
    with sqlite3.connect(settings.storage.path) as db:
        units = dict(
            db.execute("SELECT DISTINCT metric, unit FROM readings WHERE device_id LIKE 'sim-%'")
        )
    assert units == {"temperature": "Cel", "humidity": "%RH", "pressure": "Pa"}
