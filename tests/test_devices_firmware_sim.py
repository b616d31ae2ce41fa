"""`telemetry-sim --firmware` against a real Mosquitto and a real hub with
the matching `[[mqtt.sources]]` preset: the devices show up online, with
readings in canonical units, go offline when their firmware says so, and
the store holds what the simulator says it delivered."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from hub.config import Settings, SourceSettings
from hub.sources.names import device_id_for
from tests.brokers import Mosquitto
from tests.hubs import RunningHub, serve_hub, wait_until
from tests.sources import Seen, devices, until_device, with_sources

PROJECT = Path(__file__).resolve().parents[1]
Preset = Literal["tasmota", "zigbee2mqtt", "homie", "esphome"]
FIRMWARES: tuple[Preset, ...] = ("tasmota", "zigbee2mqtt", "homie", "esphome")

# Each firmware's two devices (as hub ids) and, of each metric a user sees,
# its unit and the range its value stays in.
EXPECTED: dict[str, tuple[list[str], dict[str, tuple[str | None, float, float]]]] = {
    "tasmota": (
        ["sim-tasmota-000", "sim-tasmota-001"],
        {
            "bme280_temperature": ("Cel", 10, 35),
            "bme280_humidity": ("%RH", 20, 90),
            "bme280_pressure": ("Pa", 85_000, 110_000),
            "uptime_sec": (None, 0, 60),
            "wifi_signal": (None, -95, -30),
            "wifi_rssi": (None, 10, 100),
        },
    ),
    "zigbee2mqtt": (
        [device_id_for("sim room 0/weather"), "sim-zigbee-001"],
        {
            "temperature": ("Cel", 10, 35),
            "humidity": ("%RH", 20, 90),
            "pressure": ("Pa", 85_000, 110_000),
            "voltage": ("V", 3.0, 3.2),
            "battery": ("%", 60, 100),
            "linkquality": ("lqi", 0, 255),
        },
    ),
    "homie": (
        ["sim-homie-000", "sim-homie-001"],
        {
            "climate_temperature": ("Cel", 10, 35),
            "climate_humidity": ("%RH", 20, 90),
        },
    ),
    "esphome": (
        ["sim-esp-000", "sim-esp-001"],
        {
            "temperature": ("Cel", 10, 35),
            "humidity": ("%RH", 20, 90),
            "motion": (None, 0, 1),
        },
    ),
}


@dataclass
class Sim:
    """A `telemetry-sim` process, and what it printed once it ended."""

    process: asyncio.subprocess.Process
    out: str = ""
    err: str = ""
    summary: dict[str, float] = field(default_factory=dict)


@asynccontextmanager
async def simulating(broker: Mosquitto, firmware: str, *argv: str) -> AsyncIterator[Sim]:
    """The simulator running until the block ends, then stopped with SIGINT."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devices.sim",
        *("--firmware", firmware, "--broker", broker.url, "--rate", "5", "--seed", "1"),
        *("--quiet", *argv),
        cwd=PROJECT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    sim = Sim(process)
    try:
        yield sim
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        async with asyncio.timeout(15):
            out, err = await process.communicate()
        sim.out, sim.err = out.decode(), err.decode()
        lines = [line for line in sim.out.splitlines() if line.startswith("sent=")]
        if lines:
            pairs = (item.split("=", 1) for item in lines[-1].split() if "=" in item)
            sim.summary = {key: float(value) for key, value in pairs}


def stored(settings: Settings, device_ids: list[str]) -> int:
    marks = ",".join("?" * len(device_ids))
    with sqlite3.connect(settings.storage.path) as db:
        query = f"SELECT count(*) FROM readings WHERE device_id IN ({marks})"
        (count,) = db.execute(query, device_ids).fetchone()
        return int(count)


async def until_shows(running: RunningHub, device_id: str, metrics: list[str]) -> Seen:
    """Wait until the device is online with each of `metrics`; it as shown."""
    latest: dict[str, Seen] = {}

    async def check() -> bool:
        nonlocal latest
        latest = await devices(running)
        seen = latest.get(device_id)
        return seen is not None and seen.online and set(metrics) <= set(seen.metrics)

    await wait_until(check, what=f"{device_id} online with {metrics}")
    return latest[device_id]


def assert_shows(seen: Seen, metrics: dict[str, tuple[str | None, float, float]]) -> None:
    for metric, (unit, low, high) in metrics.items():
        value, shown_unit = seen.metrics[metric]
        assert shown_unit == unit, metric
        assert low <= value <= high, (metric, value)


@pytest.mark.parametrize("firmware", FIRMWARES)
async def test_the_hub_shows_the_simulated_firmware(
    settings: Settings, mosquitto: Mosquitto, firmware: Preset
) -> None:
    device_ids, metrics = EXPECTED[firmware]
    settings = with_sources(settings, SourceSettings(preset=firmware))
    async with serve_hub(settings) as running:
        async with simulating(mosquitto, firmware, "--devices", "2") as sim:
            seen = [await until_shows(running, d, list(metrics)) for d in device_ids]
        assert sim.process.returncode == 0, sim.err
        # (a Zigbee2MQTT bridge that stops says so only of itself: its devices with it)
        for device_id in device_ids:
            await until_device(running, device_id, online=False)
        readings = sim.summary["readings"]
        await wait_until(lambda: stored(settings, device_ids) >= readings, 10, "the readings")
    # The hub's stop drains what it received: anything extra would be counted.
    assert stored(settings, device_ids) == readings
    assert sim.summary["sent"] == sim.summary["acknowledged"] > 0
    assert sim.summary["errors"] == sim.summary["dropped"] == 0
    for device in seen:
        assert_shows(device, metrics)
        assert device.attributes["source"] == firmware
    if firmware == "zigbee2mqtt":
        assert seen[0].attributes["name"] == "sim room 0/weather"
    if firmware == "homie":
        assert seen[0].attributes["homie"] == "4.0.0"
        assert seen[0].attributes["state"] == "ready"


@pytest.mark.parametrize(
    ("firmware", "device_id"),
    [
        ("tasmota", "sim-tasmota-000"),
        ("zigbee2mqtt", device_id_for("sim room 0/weather")),
        ("homie", "sim-homie-000"),
        ("esphome", "sim-esp-000"),
    ],
)
async def test_a_killed_device_goes_offline_by_its_last_will(
    settings: Settings, mosquitto: Mosquitto, firmware: Preset, device_id: str
) -> None:
    settings = with_sources(settings, SourceSettings(preset=firmware))
    async with (
        serve_hub(settings) as running,
        simulating(mosquitto, firmware, "--devices", "1") as sim,
    ):
        await until_device(running, device_id, online=True)
        sim.process.kill()  # no goodbye: the broker publishes the Will
        await sim.process.wait()
        await until_device(running, device_id, online=False)
        if firmware == "homie":  # the attribute commits after presence changes

            async def lost() -> bool:
                seen = (await devices(running)).get(device_id)
                return seen is not None and seen.attributes.get("state") == "lost"

            await wait_until(lost, what=f"{device_id} with $state lost")


async def test_a_mixed_fleet_shares_one_hub(settings: Settings, mosquitto: Mosquitto) -> None:
    settings = with_sources(settings, *(SourceSettings(preset=f) for f in FIRMWARES))
    async with (
        serve_hub(settings) as running,
        simulating(mosquitto, "tasmota", "--devices", "1") as tasmota,
        simulating(mosquitto, "zigbee2mqtt", "--devices", "2") as zigbee,
        simulating(mosquitto, "homie", "--devices", "1") as homie,
        simulating(mosquitto, "esphome", "--devices", "1") as esphome,
    ):
        for firmware in FIRMWARES:
            device_ids, metrics = EXPECTED[firmware]
            device_id = device_ids[-1] if firmware == "zigbee2mqtt" else device_ids[0]
            seen = await until_shows(running, device_id, list(metrics))
            assert_shows(seen, metrics)
            assert seen.attributes["source"] == firmware
    for sim in (tasmota, zigbee, homie, esphome):
        assert sim.process.returncode == 0, sim.err
        assert sim.summary["errors"] == 0
