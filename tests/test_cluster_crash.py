"""Failures of a cluster under QoS 1 load. kill -9 of one hub, ten times:
its share of the shared subscription waits in its session until it comes
back with the same client id, what it had not acknowledged comes again, and
the database's dedup index keeps each reading once (0 lost, 0 duplicated).
A broker restart: the hubs subscribe again; the window before they do is
measured. A PostgreSQL restart: nothing acknowledged that is not stored."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import aiohttp
import aiomqtt
import asyncpg
import pytest

from tests.brokers import Mosquitto, free_port
from tests.hubs import HubProcess, hub_environment, hub_settings, serve_hub, wait_until
from tests.postgres import PrivatePostgres
from tests.test_crash import persistent_broker, publish_numbered

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROUNDS = 10
T = TypeVar("T")


async def stored(url: str) -> tuple[int, int]:
    """(readings, distinct device seqs) of the test device."""
    connection = await asyncpg.connect(url)
    try:
        row = await connection.fetchrow(
            "SELECT count(*), count(DISTINCT device_seq) FROM readings WHERE device_id = 'crash-1'"
        )
    except asyncpg.UndefinedTableError:
        return 0, 0  # not migrated yet
    finally:
        await connection.close()
    assert row is not None
    return int(row[0]), int(row[1])


async def started_hubs(tmp_path: Path, broker: Mosquitto, url: str) -> list[HubProcess]:
    """Two hub processes on one database, splitting telemetry by a shared
    subscription, each with a client id of its own that stays across restarts."""
    hubs = []
    for n in range(2):
        port = free_port()
        environment = hub_environment(tmp_path / f"hub-{n}", broker, port)
        environment |= {
            "HUB_STORAGE__URL": url,
            "HUB_MQTT__SHARED_GROUP": "hubs",
            "HUB_MQTT__CLIENT_ID": f"{tmp_path.name}-hub-{n}",
        }
        hubs.append(HubProcess(environment, port))
    for hub in hubs:
        await hub.start()
    return hubs


async def test_ten_kills_of_a_hub_lose_and_repeat_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    total = 12_000
    async with persistent_broker(tmp_path) as broker:
        hubs = await started_hubs(tmp_path, broker, postgres_url)
        victim = hubs[0]

        async def count() -> int:
            return (await stored(postgres_url))[0]

        sent = [0]
        publishing = asyncio.create_task(publish_numbered(broker, total, rate=400, sent=sent))
        try:
            for _ in range(ROUNDS):
                at = await count()
                await polled(count, lambda n, at=at: n >= at + 200, 30, "readings stored")
                await victim.kill()
                down = sent[0]
                await wait_until(
                    lambda down=down: sent[0] >= down + 100, 30, "publishes while down"
                )
                await victim.start()
            assert not publishing.done(), "the ten rounds fit within the publishing"
            await publishing
            await polled(count, lambda n: n >= total, 60, f"all {total} readings")
        finally:
            publishing.cancel()
            codes = [await hub.stop() for hub in hubs]
    assert codes == [0, 0]
    assert await stored(postgres_url) == (total, total)


async def publish_through_restarts(
    broker: Mosquitto, count: int, rate: float, acked: list[float]
) -> None:
    """QoS 1, numbered, paced; reconnects when the broker goes away and sends
    the message it was sending again. `acked[seq]` is when the broker
    acknowledged it (monotonic time)."""
    started = time.monotonic()
    seq = 0
    while seq < count:
        try:
            async with aiomqtt.Client(
                "127.0.0.1", broker.port, identifier="restart-publisher", clean_session=False
            ) as client:
                while seq < count:
                    delay = started + seq / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    body = f'{{"seq": {seq}, "values": {{"n": {seq}}}}}'
                    await client.publish("devices/crash-1/telemetry", body, qos=1)
                    acked.append(time.monotonic())
                    seq += 1
        except aiomqtt.MqttError:
            await asyncio.sleep(0.05)  # the broker is restarting: try again


async def test_a_broker_restart_under_load_loses_only_what_came_before_resubscribing(
    tmp_path: Path, postgres_url: str
) -> None:
    """Mosquitto 2.0 forgets shared subscriptions when it restarts. The hubs
    subscribe again when they reconnect; what the broker accepted for the
    group before then has no subscriber and is dropped. This measures that
    window and checks that nothing else is lost and nothing repeated."""
    total = 4000
    async with persistent_broker(tmp_path) as broker:
        hubs = await started_hubs(tmp_path, broker, postgres_url)
        acked: list[float] = []
        publishing = asyncio.create_task(publish_through_restarts(broker, total, 400, acked))
        try:
            await wait_until(lambda: len(acked) >= 1000, 30, "1,000 published")
            broker.stop()
            restarted, stopped_at = time.monotonic(), time.time()
            broker.start()
            resubscribed = await both_subscribed(hubs, since=stopped_at, within=30)
            await publishing
            await wait_until(lambda: len(acked) == total, 10, "all published")
            # everything published after both hubs resubscribed arrives
            late = [seq for seq, t in enumerate(acked) if t > resubscribed]
            await wait_until_stored(postgres_url, late, within=30)
        finally:
            publishing.cancel()
            codes = [await hub.stop() for hub in hubs]
        count, distinct = await stored(postgres_url)
        seqs = await stored_seqs(postgres_url)
    assert codes == [0, 0]
    assert count == distinct, "nothing stored twice"
    window = [seq for seq, t in enumerate(acked) if restarted <= t <= resubscribed]
    lost = sorted(set(range(total)) - seqs)
    print(
        f"broker restart: {len(window)} published in the {resubscribed - restarted:.2f} s "
        f"before both hubs resubscribed; {len(lost)} lost"
    )
    assert set(lost) <= set(window), "only what came before resubscribing is lost"


async def both_subscribed(hubs: list[HubProcess], since: float, within: float) -> float:
    """When both hubs' /readyz say MQTT connected again after `since` (wall
    time; they subscribe before saying so), as monotonic time."""
    async with aiohttp.ClientSession() as session:

        async def states() -> list[bool]:
            connected = []
            for hub in hubs:
                try:
                    async with session.get(f"http://127.0.0.1:{hub.port}/readyz") as response:
                        mqtt = (await response.json())["ingest"]["mqtt"]
                    connected.append(mqtt["state"] == "connected" and mqtt["since"] > since)
                except aiohttp.ClientError:
                    connected.append(False)
            return connected

        await polled(states, all, within, "both hubs connected to the broker again")
    return time.monotonic()


async def stored_seqs(url: str) -> set[int]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT device_seq FROM readings WHERE device_id = 'crash-1'")
    finally:
        await connection.close()
    return {int(row[0]) for row in rows}


async def wait_until_stored(url: str, seqs: list[int], within: float) -> None:
    await polled(
        lambda: stored_seqs(url), set(seqs).issubset, within, f"{len(seqs)} readings stored"
    )


async def polled(
    read: Callable[[], Awaitable[T]], ok: Callable[[T], bool], within: float, what: str
) -> T:
    """`read()` again until `ok` of what it gives (an async `wait_until`)."""
    deadline = time.monotonic() + within
    while not ok(value := await read()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within} s waiting for {what} (last: {value})")
        await asyncio.sleep(0.05)
    return value


async def test_a_postgresql_restart_under_load_acknowledges_nothing_unstored(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The database goes away under QoS 1 load and comes back: /readyz says
    so meanwhile, the hub acknowledges nothing it has not stored (the broker
    holds the rest), and in the end every message is stored once."""
    total = 2000
    server = PrivatePostgres(free_port())
    server.start()
    url = f"postgresql://postgres@127.0.0.1:{server.port}/hub"  # created by the hub
    base = hub_settings(tmp_path, mosquitto.url)
    settings = replace(base, storage=replace(base.storage, url=url))
    try:
        async with serve_hub(settings) as running, aiohttp.ClientSession() as session:

            async def ready() -> int:
                async with session.get(running.url + "/readyz") as response:
                    return response.status

            sent = [0]
            publishing = asyncio.create_task(
                publish_numbered(mosquitto, total, rate=200, sent=sent)
            )
            try:
                await wait_until(lambda: running.hub.store.head >= 300, 20, "readings stored")
                # In a thread: pg_ctl waits for the shutdown, and the hub on this
                # event loop must go on meanwhile, as it would beside a real one.
                await asyncio.to_thread(server.stop)
                down_at = sent[0]
                await polled(ready, lambda status: status == 503, 30, "/readyz 503")
                await wait_until(lambda: sent[0] >= down_at + 200, 30, "publishes while away")
                assert await ready() == 503
                await asyncio.to_thread(server.start)
                await polled(ready, lambda status: status == 200, 30, "/readyz 200")
                await publishing
                await wait_until_stored(url, list(range(total)), within=60)
            finally:
                publishing.cancel()
        assert await stored(url) == (total, total)
    finally:
        server.remove()
