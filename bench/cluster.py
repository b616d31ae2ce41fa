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
from bench.ingest_ratio import PUBLISHERS, STALL_TIMEOUT, message_file, publish

SERVER = os.environ.get("HUB_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
STORED = re.compile(r'^hub_readings_stored_total\{source="mqtt"\} (\d+)', re.MULTILINE)


def stored(running: Hub) -> int:
    """Readings this hub stored from MQTT."""
    with urllib.request.urlopen(running.url + "/metrics", timeout=5) as response:
        found = STORED.search(response.read().decode())
    return int(found.group(1)) if found else 0


def ingest_rate(hubs: list[Hub], port: int, lines: Path, total: int) -> float:
    """Messages/s the hubs store together, publishers to the last commit."""
    expected = total * 3
    started = time.monotonic()
    publishers = publish(port, lines, name=f"bench-{secrets.token_hex(3)}")
    first = None
    stalled_since, seen = time.monotonic(), 0
    while (count := sum(stored(h) for h in hubs)) < expected:
        if first is None and count > 0:
            first = time.monotonic()
        if count != seen:
            stalled_since, seen = time.monotonic(), count
        elif time.monotonic() - stalled_since > STALL_TIMEOUT:
            raise RuntimeError(
                f"the hubs stored {count // 3:,} of {total:,} messages and nothing more "
                f"for {STALL_TIMEOUT:g} s"
            )
        time.sleep(0.02)
    elapsed = time.monotonic() - (first or started)
    for publisher in publishers:
        publisher.wait(60)
    return total / elapsed


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    figures = measure(args.messages)
    print(f"machine: {machine()}")
    print(
        f"one hub on SQLite {figures['sqlite_msg_s']:,.0f} msg/s; on PostgreSQL "
        f"{figures['postgres_msg_s']:,.0f} ({figures['postgres_sqlite']:.2f}); two hubs on "
        f"PostgreSQL {figures['two_hubs_msg_s']:,.0f} ({figures['two_one']:.2f} of one)"
    )


if __name__ == "__main__":
    main()
