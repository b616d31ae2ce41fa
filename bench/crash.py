"""kill -9 cycles under QoS 1 load: readings lost and repeated.

A publisher sends numbered readings (device seq) at QoS 1 to a Mosquitto with
persistence; the hub, a process of its own, is killed with SIGKILL and
restarted `--cycles` times mid-stream. At the end the store is counted.

    python -m bench.crash [--cycles 10] [--rate 400]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
from pathlib import Path

from bench.harness import machine
from tests.brokers import free_port
from tests.hubs import HubProcess, hub_environment
from tests.test_crash import persistent_broker, publish_numbered


async def cycles(count: int, rate: float, folder: Path) -> tuple[int, int, int]:
    total = int(rate * (count * 2.0 + 3))
    db = folder / "hub.db"
    async with persistent_broker(folder) as broker:
        port = free_port()
        hub = HubProcess(hub_environment(folder, broker, port), port)
        await hub.start()
        publishing = asyncio.create_task(publish_numbered(broker, total, rate))
        for _ in range(count):
            await asyncio.sleep(1.5)
            await hub.kill()
            await asyncio.sleep(0.5)
            await hub.start()
        await publishing
        for _ in range(600):
            if _counts(db)[0] >= total:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        await hub.stop()
    stored, distinct = _counts(db)
    return total, stored, distinct


def _counts(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT device_seq) FROM readings WHERE device_id = 'crash-1'"
        ).fetchone()
    return int(row[0]), int(row[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--rate", type=float, default=400.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-crash-") as folder:
        total, stored, distinct = asyncio.run(cycles(args.cycles, args.rate, Path(folder)))
    print(f"machine: {machine()}")
    print(
        f"{args.cycles} kill -9 cycles at {args.rate:g} msg/s: published {total:,} at QoS 1, "
        f"stored {stored:,} ({distinct:,} distinct): lost {total - distinct:,}, "
        f"repeated {stored - distinct:,}"
    )


if __name__ == "__main__":
    main()
