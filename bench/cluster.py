"""Cluster ingest: one hub on SQLite, one hub on PostgreSQL, and two hubs on
PostgreSQL splitting a shared subscription, on the same message stream.

Four `mosquitto_pub -l -q 1` publishers send the same file of messages (3
metrics each, `bench.ingest_ratio`) to a private Mosquitto; the figure is
messages per second stored and acknowledged (QoS 1, after the commit), from
the first reading stored to the last, counted by the hubs'
`hub_readings_stored_total`. No dashboards: this is the write path.
PostgreSQL is the server `HUB_BENCH_POSTGRES` names (by default the one on
loopback), on a database created for the run and dropped after.

    python -m bench.cluster [--messages 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.harness import Hub, broker, hub, machine
from bench.ingest_ratio import PUBLISHERS, message_file, publish, stored_rate

SERVER = os.environ.get("HUB_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
STORED = re.compile(r'^hub_readings_stored_total\{source="mqtt"\} (\d+)', re.MULTILINE)


def stored(running: Hub) -> int:
    """Readings this hub stored from MQTT."""
    with urllib.request.urlopen(running.url + "/metrics", timeout=5) as response:
        found = STORED.search(response.read().decode())
    return int(found.group(1)) if found else 0


def ingest_rate(hubs: list[Hub], port: int, lines: Path, total: int) -> float:
    """Messages/s the hubs store together, publishers to the last commit."""
    publishers = publish(port, lines, name=f"bench-{secrets.token_hex(3)}")
    return stored_rate(lambda: sum(stored(h) for h in hubs) // 3, publishers, total)


@contextlib.contextmanager
def database() -> Iterator[str]:
    name = f"hub_bench_{secrets.token_hex(6)}"
    try:
        yield urlunsplit(urlsplit(SERVER)._replace(path=f"/{name}"))
    finally:
        asyncio.run(_drop(name))


async def _drop(name: str) -> None:
    server = await asyncpg.connect(SERVER)
    try:
        await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await server.close()


def measure(messages: int) -> dict[str, float]:
    per_publisher = messages // PUBLISHERS
    total = per_publisher * PUBLISHERS
    lines = message_file(per_publisher)
    figures: dict[str, float] = {}
    try:
        with broker() as mosquitto:
            with hub(mosquitto.url) as running:
                figures["sqlite_msg_s"] = ingest_rate([running], mosquitto.port, lines, total)
            with database() as url, hub(mosquitto.url, STORAGE__URL=url) as running:
                figures["postgres_msg_s"] = ingest_rate([running], mosquitto.port, lines, total)
            with (
                database() as url,
                hub(mosquitto.url, STORAGE__URL=url, MQTT__SHARED_GROUP="bench") as a,
                hub(mosquitto.url, STORAGE__URL=url, MQTT__SHARED_GROUP="bench") as b,
            ):
                figures["two_hubs_msg_s"] = ingest_rate([a, b], mosquitto.port, lines, total)
    finally:
        lines.unlink()
    figures["postgres_sqlite"] = figures["postgres_msg_s"] / figures["sqlite_msg_s"]
    figures["two_one"] = figures["two_hubs_msg_s"] / figures["postgres_msg_s"]
    return figures


def follow_cost(readings: int) -> dict[str, float]:
    """What following the log costs one hub: `readings` committed (by
    another store, in batches of 300), then read from the log by a follower
    starting at 0, as a hub catching up does; its wall and CPU time per
    reading (the CPU of this process, which only follows meanwhile)."""
    with database() as url:
        wall, used = asyncio.run(_follow(url, readings))
    return {
        "readings": readings,
        "follow_us_per_reading": wall / readings * 1e6,
        "follow_cpu_us_per_reading": used / readings * 1e6,
    }


async def _follow(url: str, readings: int) -> tuple[float, float]:
    from hub.models import PendingReading, WriteBatch
    from hub.store.feed import Feed
    from hub.store.postgres import PostgresStore

    writer, follower = PostgresStore(url), PostgresStore(url)
    await writer.open()
    try:
        now = int(time.time() * 1000)
        for first in range(0, readings, 300):
            batch = tuple(
                PendingReading(f"d{n % 100}", f"m{n % 3}", now + n, float(n), "Cel", None)
                for n in range(first, min(readings, first + 300))
            )
            await writer.write(WriteBatch(readings=batch))
        await follower.open()
        try:
            head = follower.head
            follower.feed = Feed(0)  # as a hub that starts following from the first seq
            started, cpu = time.perf_counter(), time.process_time()
            await follower.catch_up()
            wall, used = time.perf_counter() - started, time.process_time() - cpu
            assert follower.feed.head == head
        finally:
            await follower.close()
    finally:
        await writer.close()
    return wall, used


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--follow", type=int, default=0, help="only the log-follow cost")
    args = parser.parse_args()
    if args.follow:
        cost = follow_cost(args.follow)
        print(
            f"following the log, {cost['readings']:,} readings: "
            f"{cost['follow_us_per_reading']:.1f} µs wall, "
            f"{cost['follow_cpu_us_per_reading']:.1f} µs CPU a reading"
        )
        return
    figures = measure(args.messages)
    print(f"machine: {machine()}")
    print(
        f"one hub on SQLite {figures['sqlite_msg_s']:,.0f} msg/s; on PostgreSQL "
        f"{figures['postgres_msg_s']:,.0f} ({figures['postgres_sqlite']:.2f}); two hubs on "
        f"PostgreSQL {figures['two_hubs_msg_s']:,.0f} ({figures['two_one']:.2f} of one)"
    )


if __name__ == "__main__":
    main()
