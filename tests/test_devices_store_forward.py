"""Store-and-forward end to end: a buffering device, the real hub on uvicorn,
a real Mosquitto, and outages of each (the broker stopped, the hub gone). What
counts is what the hub's SQLite file holds afterwards: every reading once,
with the device's own timestamp."""

from __future__ import annotations

import asyncio
import gc
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devices import Buffering, Device, DropPolicy, LinkError, MqttLink, SocketIOLink
from devices.sim import main as sim_main
from hub.config import Settings
from tests.brokers import Mosquitto, free_port
from tests.hubs import hub_settings, serve_hub, wait_until
from tests.test_devices_sim import summary


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A broker that keeps sessions across a restart, as a production one does.

    The hub's MQTT session is persistent; with `persistence true` the broker
    keeps it (and the messages queued for it) through `stop()`/`start()`.
    Without it, what devices publish after the restart but before the hub
    has subscribed again is lost between broker and hub: QoS 1 to the broker
    says the broker took it, not that the hub will get it.
    """
    directory = tmp_path / "mosquitto"
    directory.mkdir()
    # Started as root, Mosquitto would switch to its own user, which cannot
    # write its database into the test's directory.
    config = "persistence true\nuser root"
    broker = Mosquitto(directory=directory, port=free_port(), extra_config=config)
    broker.start()
    yield broker
    broker.stop()


def stored(settings: Settings, device_id: str) -> dict[int, tuple[int, float]]:
    """device seq -> (ts, value) of what the hub stored for `device_id`."""
    with sqlite3.connect(settings.storage.path) as db:
        rows = db.execute(
            "SELECT device_seq, ts, value FROM readings WHERE device_id = ?", (device_id,)
        ).fetchall()
    by_seq = {int(seq): (int(ts), float(value)) for seq, ts, value in rows}
    assert len(by_seq) == len(rows), "a reading stored twice"
    return by_seq


def buffering(**options: Any) -> Buffering:
    quick: dict[str, Any] = {"reconnect_min": 0.05, "reconnect_max": 0.3, "flush_rate": 2000}
    return Buffering(**(quick | options))


class Producer:
    """Makes a reading every `period` seconds, as a sensor does, whatever the link does."""

    def __init__(self, device: Device, period: float = 0.02) -> None:
        self.device = device
        self.period = period
        self.made: dict[int, tuple[int, float]] = {}  # seq -> (ts, value)
        self.outcomes: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def _produce(self) -> None:
        n = 0
        while True:
            envelope = self.device.envelope({"temperature": float(n)})
            self.made[envelope["seq"]] = (envelope["ts"], float(n))
            result = await self.device.send_envelope(envelope)
            self.outcomes.append("buffered" if result.buffered else "ok" if result.ok else "no")
            n += 1
            await asyncio.sleep(self.period)

    def start(self) -> None:
        self._task = asyncio.create_task(self._produce())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.wait([self._task])


async def test_mqtt_a_broker_outage_loses_nothing_and_keeps_device_time(
    settings: Settings, mosquitto: Mosquitto
) -> None:
    link = MqttLink("sf-mqtt", mosquitto.url, timeout=2)
    device = Device("sf-mqtt", link, buffer=buffering())
    async with serve_hub(settings), device:
        producer = Producer(device)
        producer.start()
        await wait_until(lambda: len(stored(settings, "sf-mqtt")) >= 10, 10, "readings stored")
        await asyncio.to_thread(mosquitto.stop)
        # readings keep coming and are kept
        await wait_until(lambda: device.stats.buffered > 50, 10, "readings buffered")
        assert not device.connected
        await asyncio.to_thread(mosquitto.start)
        await wait_until(lambda: device.stats.flushed > 0, 10, "the flush to begin")
        await producer.stop()
        await wait_until(lambda: device.stats.buffered == 0, 10, "the flush")
        made = producer.made
        await wait_until(lambda: len(stored(settings, "sf-mqtt")) >= len(made), 10, "storage")
    # the hub's stop drained what it received: a reading stored twice would show
    assert stored(settings, "sf-mqtt") == made  # every reading once, device ts and all
    stats = device.stats
    assert stats.dropped == 0
    assert stats.unsent == 0
    assert stats.delivered == len(made)
    assert stats.flushed > 50
    assert "buffered" in producer.outcomes
    assert "no" not in producer.outcomes


async def restart_hub_while_producing(
    settings: Settings, device: Device, port: int, outage_s: float
) -> Producer:
    """Serve the hub, take it away for `outage_s` and serve it again on the
    same port and store, while `device` keeps producing; then drain it."""
    producer = Producer(device)
    async with serve_hub(settings, port=port):
        await device.connect()
        await device.start()
        producer.start()
        await wait_until(lambda: device.stats.delivered >= 10, 10, "readings delivered")
    await wait_until(lambda: not device.connected, 5, "the device to see the hub go")
    # away while the device makes `outage_s` worth of readings
    kept = device.stats.buffered + outage_s / producer.period
    await wait_until(lambda: device.stats.buffered >= kept, 10 + outage_s, "readings buffered")
    async with serve_hub(settings, port=port):
        await wait_until(lambda: device.stats.flushed > 0, 10, "the flush to begin")
        await producer.stop()
        await wait_until(lambda: device.stats.buffered == 0, 10, "the flush")
        await device.close()
    return producer


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]], ids=["websocket", "polling"])
async def test_socketio_a_hub_restart_loses_nothing_and_keeps_device_time(
    tmp_path: Path, transports: list[str]
) -> None:
    settings = hub_settings(tmp_path)
    port = free_port()
    link = SocketIOLink("sf-sio", f"http://127.0.0.1:{port}", transports=transports, timeout=3)
    device = Device("sf-sio", link, buffer=buffering())
    producer = await restart_hub_while_producing(settings, device, port, outage_s=1.0)
    made = producer.made
    assert stored(settings, "sf-sio") == made
    stats = device.stats
    assert (stats.dropped, stats.unsent, stats.delivered) == (0, 0, len(made))
    assert stats.flushed > 20
    assert "buffered" in producer.outcomes
    assert "no" not in producer.outcomes


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]], ids=["websocket", "polling"])
async def test_connecting_while_the_hub_shuts_down_fails_only_with_link_error(
    tmp_path: Path, transports: list[str]
) -> None:
    """What a reconnecting device meets when it races a hub's shutdown: a
    WebSocket accepted and closed at once, a poll cut mid-answer. Each may only
    end in `LinkError`, with nothing left open (filterwarnings turns aiohttp's
    ResourceWarning about a leaked connection into a failure)."""
    settings = hub_settings(tmp_path)
    outcomes: set[str] = set()
    for round_ in range(6):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        link = SocketIOLink(f"race-{round_}", url, transports=transports, timeout=1)
        stop = asyncio.Event()
        seen: set[str] = set()

        async def hammer(
            link: SocketIOLink = link, stop: asyncio.Event = stop, seen: set[str] = seen
        ) -> None:
            while not stop.is_set():
                try:
                    await link.connect()
                    seen.add("connected")
                    await link.close()
                except LinkError:
                    seen.add("LinkError")
                await asyncio.sleep(0.002)  # a reconnecting device's pace

        async with serve_hub(settings, port=port):
            task = asyncio.create_task(hammer())
            await wait_until(lambda seen=seen: "connected" in seen, 10, "a connection")
        # and attempts against the hub gone
        await wait_until(lambda seen=seen: "LinkError" in seen, 10, "a refused connection")
        stop.set()
        await task  # re-raises anything but LinkError
        await link.close()
        outcomes |= seen
    gc.collect()
    assert outcomes == {"connected", "LinkError"}


@pytest.mark.parametrize(
    ("policy", "kept"), [("drop_oldest", range(20, 30)), ("drop_newest", range(10))]
)
async def test_a_buffer_too_small_for_the_outage_drops_and_counts_exactly(
    tmp_path: Path, policy: DropPolicy, kept: range
) -> None:
    settings = hub_settings(tmp_path)
    port = free_port()
    link = SocketIOLink("sf-small", f"http://127.0.0.1:{port}", transports=["websocket"])
    device = Device("sf-small", link, buffer=buffering(max_envelopes=10, policy=policy))
    before: list[dict[str, Any]] = []
    during: list[dict[str, Any]] = []
    async with serve_hub(settings, port=port):
        await device.connect()
        await device.start()
        for i in range(5):
            before.append(device.envelope({"temperature": float(i)}))
            assert (await device.send_envelope(before[-1])).ok
    await wait_until(lambda: not device.connected, 5, "the device to see the hub go")
    for i in range(30):
        during.append(device.envelope({"temperature": 100.0 + i}))
        assert (await device.send_envelope(during[-1])).buffered
    assert (device.stats.buffered, device.stats.dropped) == (10, 20)
    async with serve_hub(settings, port=port):
        await wait_until(lambda: device.stats.buffered == 0, 10, "the flush")
        await device.close()
    expected = before + [during[i] for i in kept]
    assert stored(settings, "sf-small") == {
        e["seq"]: (e["ts"], e["values"]["temperature"]) for e in expected
    }
    stats = device.stats
    assert (stats.dropped, stats.flushed, stats.delivered) == (20, 10, 15)
    assert stats.buffered_total == 30


async def test_the_simulator_with_outages_delivers_what_it_says(
    settings: Settings, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--broker", mosquitto.url, "--devices", "3", "--rate", "20", "--duration", "3"]
    argv += ["--offline-every", "1", "--offline-for", "0.5", "--id-prefix", "sf-sim"]
    argv += ["--seed", "2", "--quiet", "--metrics", "temperature,humidity"]
    async with serve_hub(settings):
        status = await asyncio.to_thread(sim_main, argv)
        result = summary(capsys.readouterr().out)

        def count() -> int:
            with sqlite3.connect(settings.storage.path) as db:
                (n,) = db.execute(
                    "SELECT count(*) FROM readings WHERE device_id LIKE 'sf-sim-%'"
                ).fetchone()
                return int(n)

        await wait_until(lambda: count() >= result["readings"], 10, "the sim's readings")
    # the hub's stop drained what it received: a reading stored twice would show
    assert count() == result["readings"]
    assert status == 0
    assert result["dropped"] == 0
    assert result["errors"] == 0
    assert result["buffered"] > 0  # the outages happened and were buffered
    assert result["sent"] == result["acknowledged"] == pytest.approx(3 * 20 * 3, abs=3)
    assert result["readings"] == result["acknowledged"] * 2
    assert not math.isnan(result["rate"])
