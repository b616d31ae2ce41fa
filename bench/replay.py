"""Replay: throughput with no rate limit, the achieved rate at a limit, and
live latency during a reconnect storm.

    python -m bench.replay [--backlog 100000] [--storm 200] [--behind 5000]

A. One dashboard reconnects `--backlog` readings behind, on a hub with no
   replay limit: readings/s from store to client (subscribe to `replay` end),
   against a raw SQLite `SELECT` of the same rows from the same file (the
   hub's replay query, all rows fetched by Python's sqlite3, best of 3).
B. The same at `replay.rate = 2000`: the achieved rate.
C. Live traffic of 1,000 readings/s (telemetry-sim over MQTT) watched by 5
   connected dashboards; latency idle for 10 s, then while `--storm`
   dashboards reconnect at once, each `--behind` readings behind
   (`replay.max_concurrent` = 8, `replay.rate` = 2000).

Everything (broker, hub, simulator, these clients) shares this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import socketio

from bench.harness import broker, hub, machine, mqtt_fleet, percentile
from hub.wire import HubPacket

DASHBOARD = "/dashboard"
STORM_PROCESSES = 4
STORM_TIMEOUT = float(os.environ.get("STORM_TIMEOUT", "300"))


async def prefill(url: str, count: int) -> None:
    """`count` readings through the hub's own HTTP ingest, 1,000 per request."""
    now = int(time.time() * 1000)
    async with aiohttp.ClientSession() as session:
        for first in range(0, count, 1000):
            values = ",".join(f'"m{i}": {first + i}' for i in range(min(1000, count - first)))
            body = f'{{"ts": {now}, "values": {{{values}}}}}'
            async with session.post(
                f"{url}/api/devices/fill-{first // 100_000}/telemetry", data=body
            ) as response:
                assert response.status == 202, await response.text()


async def epoch_and_head(url: str) -> tuple[str, int]:
    async with aiohttp.ClientSession() as session, session.get(url + "/readyz") as response:
        store = (await response.json())["store"]
        return store["epoch"], store["head"]


class Replaying:
    """One dashboard reconnecting with a cursor; records its replay."""

    def __init__(self, url: str, epoch: str, seq: int, expect: int | None = None) -> None:
        # Done at the `replay` end, or once `expect` readings arrived: readings
        # committed but not yet broadcast when it subscribed come after the
        # end, as live ones.
        self.expect = expect
        self.url = url
        self.cursor = {"epoch": epoch, "seq": seq}
        # Decoding with orjson, as the hub encodes (and as a browser decodes
        # with its native JSON.parse): the standard library's json took 0.47
        # s of the client's CPU for 100,000 readings, orjson 0.15 s, so the
        # figure measures the hub rather than this client.
        self.client = socketio.AsyncClient(reconnection=False, serializer=HubPacket)
        self.received = 0
        self.arrivals: list[tuple[float, int]] = []  # (time, readings so far)
        self.done = asyncio.Event()
        self.started = 0.0
        self.ended = 0.0
        self.gaps: list[dict[str, Any]] = []
        self.client.on("readings", self._readings, namespace=DASHBOARD)
        self.client.on("replay", self._replay, namespace=DASHBOARD)
        self.client.on("gap", self._gap, namespace=DASHBOARD)

    def _readings(self, frame: dict[str, Any]) -> None:
        if not self.done.is_set():
            self.received += len(frame["readings"])
            self.arrivals.append((time.monotonic(), self.received))
            if self.expect is not None and self.received >= self.expect:
                self.ended = time.monotonic()
                self.done.set()

    def _replay(self, event: dict[str, Any]) -> None:
        if event["state"] == "end" and self.expect is None:
            self.ended = time.monotonic()
            self.done.set()

    def _gap(self, event: dict[str, Any]) -> None:
        # The hub gave up on part of the replay (a client that took nothing
        # off its connection for 30 s, say): it ends here, not at a `replay` end.
        self.gaps.append(event)
        if self.expect is None:
            self.ended = time.monotonic()
            self.done.set()

    async def run(self) -> None:
        await self.client.connect(
            self.url,
            namespaces=[DASHBOARD],
            transports=["websocket"],
            auth={"cursor": self.cursor},
            wait_timeout=30,
        )
        self.started = time.monotonic()
        await self.client.call("subscribe", {"devices": ["*"]}, namespace=DASHBOARD, timeout=60)
        await asyncio.wait_for(self.done.wait(), STORM_TIMEOUT)

    async def close(self) -> None:
        await self.client.disconnect()


async def replay_rate(url: str, backlog: int, burst: int) -> tuple[float, float, int]:
    """Overall readings/s, and the steady rate once the burst is spent."""
    await prefill(url, backlog)
    epoch, head = await epoch_and_head(url)
    one = Replaying(url, epoch, head - backlog, expect=backlog)
    await one.run()
    await one.close()
    overall = one.received / (one.ended - one.started)
    # from the moment the burst was delivered to the last page
    within_burst = [(t, n) for t, n in one.arrivals if n <= burst] or [one.arrivals[0]]
    (t0, n0), (t1, n1) = within_burst[-1], one.arrivals[-1]
    steady = (n1 - n0) / (t1 - t0) if t1 > t0 else overall
    return overall, steady, one.received


UNLIMITED = {
    "REPLAY__RATE": "100000000",
    "REPLAY__BURST": "100000000",
    "REPLAY__HUB_RATE": "100000000",
    "REPLAY__PAGE_SIZE": "2000",
    "REPLAY__MAX_BACKLOG": "10000000",
}


def select_rate(db: Path, after: int) -> tuple[float, int]:
    """Readings/s of a raw SELECT of what a replay after `after` sends (the
    hub's replay query, every row fetched), best of 3; and the row count."""
    best, rows = 0.0, 0
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        for _ in range(3):
            started = time.perf_counter()
            rows = len(
                connection.execute(
                    "SELECT seq, device_id, metric, ts, value, unit FROM readings "
                    "WHERE seq > ? ORDER BY seq",
                    (after,),
                ).fetchall()
            )
            best = max(best, rows / (time.perf_counter() - started))
    return best, rows


def replay_against_select(mqtt_url: str, backlog: int) -> dict[str, float]:
    """A: unlimited replay of `backlog` readings ÷ a raw SELECT of them."""
    with hub(mqtt_url, **UNLIMITED) as running:
        rate, _, count = asyncio.run(replay_rate(running.url, backlog, 0))
        select, rows = select_rate(running.db, running.head() - backlog)
    if rows != count:
        raise RuntimeError(f"replay sent {count:,} readings, the SELECT found {rows:,}")
    return {"replay_per_s": rate, "select_per_s": select, "readings": count}


class Watcher:
    """A connected live dashboard measuring device-to-dashboard latency."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = socketio.AsyncClient(reconnection=False)
        self.window: list[float] | None = None
        self.client.on("readings", self._readings, namespace=DASHBOARD)

    def _readings(self, frame: dict[str, Any]) -> None:
        if self.window is not None:
            now = time.time() * 1000
            self.window.extend(now - r["ts"] for r in frame["readings"])

    async def start(self) -> None:
        await self.client.connect(self.url, namespaces=[DASHBOARD], transports=["websocket"])
        await self.client.call("subscribe", {"devices": ["*"]}, namespace=DASHBOARD)


async def storm(url: str, mqtt_url: str, clients: int, behind: int) -> dict[str, Any]:
    sim = mqtt_fleet(mqtt_url, 10, 1000 / 30, 600)
    watchers = [Watcher(url) for _ in range(5)]
    try:
        for watcher in watchers:
            await watcher.start()
        await asyncio.sleep(max(3.0, behind / 1000 + 1))  # build a backlog of live traffic
        idle: list[float] = []
        for watcher in watchers:
            watcher.window = idle
        await asyncio.sleep(10)
        for watcher in watchers:
            watcher.window = None
        epoch, head = await epoch_and_head(url)
        during: list[float] = []
        for watcher in watchers:
            watcher.window = during
        # The reconnecting dashboards run in processes of their own, so that
        # their decoding does not delay the watchers' measurement in this one,
        # at a lower CPU priority, so that on a shared 2-core machine they do
        # not starve the hub, the broker or the simulator (then the figure
        # would be of the machine rather than of the hub).
        groups = [
            clients // STORM_PROCESSES + (k < clients % STORM_PROCESSES)
            for k in range(STORM_PROCESSES)
        ]
        processes = [
            await asyncio.create_subprocess_exec(
                "nice",
                "-n",
                "19",
                sys.executable,
                "-m",
                "bench.replay",
                "--stormers",
                url,
                epoch,
                str(head - behind),
                str(group),
                stdout=subprocess.PIPE,
            )
            for group in groups
            if group
        ]
        outputs = [json.loads((await p.communicate())[0]) for p in processes]
        out = {
            "took": max(o["took"] for o in outputs),
            "replayed": sum(o["replayed"] for o in outputs),
            "completed": sum(o["completed"] for o in outputs),
            "gaps": [gap for o in outputs for gap in o["gaps"]],
        }
        for watcher in watchers:
            watcher.window = None
        return {"idle": idle, "during": during, **out}
    finally:
        for watcher in watchers:
            await watcher.client.disconnect()
        sim.terminate()
        sim.wait(30)


async def stormers(url: str, epoch: str, seq: int, clients: int) -> None:
    replaying = [Replaying(url, epoch, seq) for _ in range(clients)]
    started = time.monotonic()
    results = await asyncio.gather(
        *(asyncio.wait_for(r.run(), STORM_TIMEOUT) for r in replaying), return_exceptions=True
    )
    took = time.monotonic() - started
    await asyncio.gather(*(r.close() for r in replaying), return_exceptions=True)
    ended = [r for result, r in zip(results, replaying, strict=True) if result is None]
    print(
        json.dumps(
            {
                "took": took,
                "replayed": sum(r.received for r in replaying),
                "completed": sum(1 for r in ended if not r.gaps),
                "gaps": [gap for r in ended for gap in r.gaps],
            }
        )
    )


def main() -> None:
    if sys.argv[1:2] == ["--stormers"]:
        url, epoch, seq, clients = sys.argv[2:6]
        asyncio.run(stormers(url, epoch, int(seq), int(clients)))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--limited-backlog", type=int, default=20_000)
    parser.add_argument("--storm", type=int, default=200)
    parser.add_argument("--behind", type=int, default=5000)
    parser.add_argument("--storm-only", action="store_true", help="skip A and B")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with broker() as mosquitto:
        if args.storm_only:
            with hub(
                mosquitto.url, REPLAY__HUB_RATE=os.environ.get("HUB_RATE", "20000")
            ) as running:
                result = asyncio.run(storm(running.url, mosquitto.url, args.storm, args.behind))
            report_storm(args, result)
            return
        a = replay_against_select(mosquitto.url, args.backlog)
        print(
            f"A. replay, no rate limit: {a['replay_per_s']:,.0f} readings/s; raw SQLite "
            f"SELECT of the same {a['readings']:,} rows: {a['select_per_s']:,.0f} rows/s; "
            f"ratio {a['replay_per_s'] / a['select_per_s']:.2f}"
        )
        with hub(mosquitto.url, REPLAY__RATE="2000", REPLAY__BURST="2000") as running:
            rate, steady, count = asyncio.run(replay_rate(running.url, args.limited_backlog, 2000))
        print(
            f"B. replay at rate = 2000, burst 2000: {steady:,.0f} readings/s once the burst "
            f"is spent ({rate:,.0f} overall, {count:,} readings)"
        )
        with hub(mosquitto.url) as running:
            result = asyncio.run(storm(running.url, mosquitto.url, args.storm, args.behind))
    report_storm(args, result)


def report_storm(args: argparse.Namespace, result: dict[str, Any]) -> None:
    idle, during = result["idle"], result["during"]
    p99_idle, p99_storm = percentile(idle, 0.99), percentile(during, 0.99)
    print(
        f"C. live latency, 1,000 readings/s, 5 dashboards: idle p50 "
        f"{percentile(idle, 0.5):.1f} ms p99 {p99_idle:.1f} ms ({len(idle):,} samples); "
        f"during a storm of {args.storm} reconnects x {args.behind:,} behind: p50 "
        f"{percentile(during, 0.5):.1f} ms p99 {p99_storm:.1f} ms ({len(during):,} samples); "
        f"ratio p99 {p99_storm / p99_idle:.2f}; storm replayed {result['replayed']:,} "
        f"readings in {result['took']:.1f} s; {result['completed']} of {args.storm} "
        "replays completed"
    )


if __name__ == "__main__":
    main()
