"""Polling-only dashboards through HAProxy in front of two hubs on one
PostgreSQL database: cookie stickiness keeps every poll on the hub that holds
its session (no reconnects on the hub that stays up), and when the other hub
is killed with -9 its dashboard reconnects through HAProxy to the survivor
with its cursor and is replayed exactly what it missed."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.cluster_demo import haproxy_binary, haproxy_config
from tests.brokers import Mosquitto, free_port, wait_for_port
from tests.hubs import Dashboard, HubProcess, dashboard, hub_environment, wait_until
from tests.test_crash import publish_numbered

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@contextlib.contextmanager
def haproxy(tmp_path: Path, front: int, hubs: list[int]) -> Iterator[None]:
    binary = haproxy_binary()
    assert binary is not None, "HAProxy is not installed (apt install haproxy)"
    config = tmp_path / "haproxy.cfg"
    config.write_text(haproxy_config(front, hubs))
    process = subprocess.Popen(
        [binary, "-f", str(config), "-db"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(front)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)


@contextlib.asynccontextmanager
async def following(url: str) -> AsyncIterator[tuple[Dashboard, list[int]]]:
    """A polling dashboard that reconnects with its cursor and subscribes
    again on every connect, as the dashboard page does; and its connects."""
    box: list[Dashboard] = []
    connects: list[int] = []

    def auth() -> dict[str, Any]:
        return box[0].cursor() if box else {}

    async with dashboard(url, ["polling"], auth=auth, reconnection=True) as board:
        box.append(board)

        async def resubscribe() -> None:
            connects.append(1)
            if len(connects) > 1:
                await board.subscribe(["*"])

        board.client.on("connect", resubscribe, namespace="/dashboard")
        connects.append(1)  # the first connect happened inside dashboard()
        await board.subscribe(["*"])
        yield board, connects


async def test_polling_dashboards_through_haproxy_survive_a_hub_killed(
    tmp_path: Path, mosquitto: Mosquitto, postgres_url: str
) -> None:
    ports = [free_port(), free_port()]
    hubs = []
    for n, port in enumerate(ports):
        environment = hub_environment(tmp_path / f"hub-{n}", mosquitto, port)
        environment |= {
            "HUB_STORAGE__URL": postgres_url,
            "HUB_MQTT__SHARED_GROUP": "hubs",
            "HUB_MQTT__CLIENT_ID": f"ha-hub-{n}",
            "HUB_SERVER__PING_INTERVAL": "2s",
            "HUB_SERVER__PING_TIMEOUT": "2s",
        }
        hubs.append(HubProcess(environment, port))
    for hub in hubs:
        await hub.start()
    front = free_port()
    total = 1500
    try:
        with haproxy(tmp_path, front, ports):
            # "localhost", not 127.0.0.1: aiohttp keeps no cookies for an IP address
            url = f"http://localhost:{front}"
            async with following(url) as (a, a_connects), following(url) as (b, b_connects):
                sent = [0]
                publishing = asyncio.create_task(
                    publish_numbered(mosquitto, total, rate=150, sent=sent)
                )
                try:
                    await a.wait_readings(300, within=30)
                    await b.wait_readings(300, within=30)
                    await hubs[0].kill()
                    down = sent[0]
                    await wait_until(lambda: sent[0] >= down + 150, 30, "publishes while down")
                    await hubs[0].start()  # its share of telemetry waits in its session
                    await publishing
                    for board in (a, b):
                        await board.wait_readings(total, within=60)
                finally:
                    publishing.cancel()
                for board in (a, b):
                    values = [int(r["value"]) for r in board.readings]
                    seqs = [r["seq"] for r in board.readings]
                    assert seqs == sorted(set(seqs)), "ascending, none twice"
                    assert sorted(values) == list(range(total)), "every reading once"
                # one dashboard was on the killed hub and came back once; the
                # other's polls all reached its own hub
                assert sorted([len(a_connects), len(b_connects)]) == [1, 2]
    finally:
        for hub in hubs:
            await hub.stop()
