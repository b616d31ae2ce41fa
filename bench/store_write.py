"""What a commit costs the SQLite store: batches written back to back
through `SqliteStore.write`, alone and beside a busy event loop.

The store's writes go through aiosqlite, a thread hop per call; beside a
busy event loop each hop waits for its turn at the loop. This measures
commits per second and each commit's time (p50, p99) for batches as the hub
makes them (`--size` readings from 20 devices, each in the `seen` map and
the latest values, as in `hub.writer`), with the loop idle and with a task
that keeps it busy half of the time, 2 ms at a stretch (a hub fanning out to
dashboards).
Run it from two checkouts to compare two versions of the store:

    python -m bench.store_write --size 60 --commits 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from hub.models import PendingReading, WriteBatch
from hub.store.sqlite import SqliteStore

T0 = 1_795_000_020_000
METRICS = ("temperature", "humidity", "pressure")
DEVICES = 20


def batch(first: int, size: int) -> WriteBatch:
    readings = tuple(
        PendingReading(f"dev-{n % DEVICES:03d}", METRICS[n % 3], T0 + n, float(n), None, n)
        for n in range(first, first + size)
    )
    return WriteBatch(readings=readings, seen={r.device_id: T0 + first for r in readings})


async def busy_loop(slice_s: float = 0.002) -> None:
    """The loop busy half of the time, 2 ms at a stretch."""
    while True:
        until = time.perf_counter() + slice_s
        while time.perf_counter() < until:
            pass
        await asyncio.sleep(slice_s)


async def measure(size: int, commits: int, busy: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        store = SqliteStore(Path(directory) / "hub.db")
        await store.open()
        load = asyncio.create_task(busy_loop()) if busy else None
        try:
            await store.write(batch(0, size))  # the series exist from here on
            times = []
            started = time.perf_counter()
            for k in range(1, commits + 1):
                t = time.perf_counter()
                await store.write(batch(k * size, size))
                times.append(time.perf_counter() - t)
            elapsed = time.perf_counter() - started
        finally:
            if load is not None:
                load.cancel()
            await store.close()
    times.sort()
    return {
        "commits_per_s": commits / elapsed,
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": times[int(len(times) * 0.99)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=60, help="readings per commit")
    parser.add_argument("--commits", type=int, default=2000)
    args = parser.parse_args()
    results = {}
    for busy in (False, True):
        figures = asyncio.run(measure(args.size, args.commits, busy))
        results["busy loop" if busy else "idle loop"] = figures
        print(
            f"{'busy' if busy else 'idle'} loop, {args.size} readings a commit: "
            f"{figures['commits_per_s']:,.0f} commits/s, "
            f"p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms",
            flush=True,
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
