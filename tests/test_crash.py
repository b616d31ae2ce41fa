"""kill -9 under QoS 1 load: every reading the broker took is stored exactly once."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt

from tests.brokers import Mosquitto, free_port
from tests.hubs import HubProcess, hub_environment, wait_until


@asynccontextmanager
async def persistent_broker(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    directory = tmp_path / "mosquitto"
    directory.mkdir()
    # `user root`: as root, Mosquitto would otherwise switch to a user that
    # cannot write its persistence file here.
    broker = Mosquitto(directory, free_port(), extra_config="persistence true\nuser root\n")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def stored(path: Path) -> tuple[int, int]:
    """(readings, distinct device seqs) of the test device."""
    if not path.exists():
        return 0, 0
    with sqlite3.connect(path) as db:
        count, distinct = db.execute(
            "SELECT count(*), count(DISTINCT device_seq) FROM readings WHERE device_id = 'crash-1'"
        ).fetchone()
    return int(count), int(distinct)


async def publish_numbered(
    broker: Mosquitto, count: int, rate: float, sent: list[int] | None = None
) -> None:
    """QoS 1, each message numbered by its device seq, paced at `rate` per
    second; `sent[0]` counts what the broker has acknowledged so far."""
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="crash-publisher") as client:
        started = time.monotonic()
        for seq in range(count):
            delay = started + seq / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await client.publish(
                "devices/crash-1/telemetry", f'{{"seq": {seq}, "values": {{"n": {seq}}}}}', qos=1
            )
            if sent is not None:
                sent[0] = seq + 1


async def test_kill_9_twice_mid_stream_loses_and_repeats_nothing(tmp_path: Path) -> None:
    total = 3000
    async with persistent_broker(tmp_path) as broker:
        port = free_port()
        hub = HubProcess(hub_environment(tmp_path, broker, port), port)
        db = tmp_path / "hub.db"
        await hub.start()
        sent = [0]
        publishing = asyncio.create_task(publish_numbered(broker, total, rate=400, sent=sent))
        try:
            for _ in range(2):
                # killed mid-stream: a few hundred readings after it stored its first
                at = stored(db)[0]
                await wait_until(
                    lambda at=at: stored(db)[0] >= at + 300, 20, "readings being stored"
                )
                await hub.kill()
                # down for a while, as devices keep publishing
                down = sent[0]
                await wait_until(
                    lambda down=down: sent[0] >= down + 100, 20, "publishes while down"
                )
                await hub.start()
            await publishing
            await wait_until(lambda: stored(db)[0] >= total, 30, f"all {total} readings")
            # (the hub's stop drains what it has: a duplicate would be counted below)
        finally:
            publishing.cancel()
            code = await hub.stop()
    assert code == 0
    assert stored(db) == (total, total)


async def test_a_broker_restart_keeps_the_hubs_session(tmp_path: Path) -> None:
    """Messages published while the hub is still reconnecting to a restarted
    broker wait in the hub's persistent session and arrive once."""
    async with persistent_broker(tmp_path) as broker:
        port = free_port()
        environment = hub_environment(tmp_path, broker, port)
        environment["HUB_MQTT__RECONNECT_MIN"] = "2s"  # slow enough to publish meanwhile
        environment["HUB_MQTT__RECONNECT_MAX"] = "4s"
        hub = HubProcess(environment, port)
        db = tmp_path / "hub.db"
        await hub.start()
        try:
            await publish_numbered(broker, 100, rate=1000)
            await wait_until(lambda: stored(db)[0] == 100, 20, "the first 100")
            broker.stop()
            broker.start()
            await publish_numbered(broker, 300, rate=1000)  # seqs 0-299: 100 repeats
            await wait_until(lambda: stored(db)[0] >= 300, 30, "the rest, after reconnecting")
            # (the hub's stop drains what it has: a duplicate would be counted below)
        finally:
            code = await hub.stop()
    assert code == 0
    assert stored(db) == (300, 300)
