"""kill -9 of one hub of a cluster under QoS 1 load, ten times: its share of
the shared subscription waits in its session until it comes back with the
same client id, what it had not acknowledged comes again, and the database's
dedup index keeps each reading once. 0 lost, 0 duplicated."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from tests.brokers import free_port
from tests.hubs import HubProcess, hub_environment, wait_until
from tests.test_crash import persistent_broker, publish_numbered

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROUNDS = 10


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


async def test_ten_kills_of_a_hub_lose_and_repeat_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    total = 12_000
    async with persistent_broker(tmp_path) as broker:
        hubs = []
        for n in range(2):
            port = free_port()
            environment = hub_environment(tmp_path / f"hub-{n}", broker, port)
            environment |= {
                "HUB_STORAGE__URL": postgres_url,
                "HUB_MQTT__SHARED_GROUP": "hubs",
                "HUB_MQTT__CLIENT_ID": f"crash-hub-{n}",
            }
            hubs.append(HubProcess(environment, port))
        for hub in hubs:
            await hub.start()
        victim = hubs[0]
        counts = {"now": 0}

        async def count() -> None:
            while True:
                counts["now"] = (await stored(postgres_url))[0]
                await asyncio.sleep(0.05)

        counting = asyncio.create_task(count())
        sent = [0]
        publishing = asyncio.create_task(publish_numbered(broker, total, rate=400, sent=sent))
        try:
            for _ in range(ROUNDS):
                at = counts["now"]
                await wait_until(lambda at=at: counts["now"] >= at + 200, 30, "readings stored")
                await victim.kill()
                down = sent[0]
                await wait_until(
                    lambda down=down: sent[0] >= down + 100, 30, "publishes while down"
                )
                await victim.start()
            assert not publishing.done(), "the ten rounds fit within the publishing"
            await publishing
            await wait_until(lambda: counts["now"] >= total, 60, f"all {total} readings")
        finally:
            publishing.cancel()
            counting.cancel()
            codes = [await hub.stop() for hub in hubs]
    assert codes == [0, 0]
    assert await stored(postgres_url) == (total, total)
