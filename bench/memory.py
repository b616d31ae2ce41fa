"""Memory: RSS per idle dashboard connection, and RSS growth while one
dashboard stops reading.

A. The hub's RSS before and after 1,000 websocket dashboards (Node.js
   socket.io-client, each subscribed to everything) connect and sit idle;
   the difference divided by 1,000.
B. With telemetry-sim sending 1,000 readings/s over MQTT, one long-polling
   dashboard subscribes and then stops polling for `--stall` seconds (a
   stalled tab: nothing drains its queue); the hub's RSS growth over that
   time, against the same time with no stalled dashboard.

    python -m bench.memory [--connections 1000] [--stall 60]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import ROOT, broker, hub, machine, mqtt_fleet

CLIENTS = ROOT / "bench" / "node" / "clients.js"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def idle_connections(url: str, pid: int, connections: int) -> float:
    """KB of hub RSS per idle dashboard connection."""
    time.sleep(1)
    before = rss_mb(pid)
    clients = subprocess.Popen(
        ["node", str(CLIENTS), url, str(connections), "websocket"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert clients.stdout is not None
    assert "ready" in clients.stdout.readline()
    time.sleep(3)  # let allocations settle
    after = rss_mb(pid)
    clients.terminate()
    clients.wait(30)
    return (after - before) * 1024 / connections


async def stalled_growth(url: str, pid: int, seconds: float) -> tuple[float, float]:
    """(MB of growth with one stalled dashboard, MB without) over `seconds`."""
    base = f"{url}/socket.io/?EIO=4&transport=polling"
    baseline_start = rss_mb(pid)
    await asyncio.sleep(seconds)
    baseline = rss_mb(pid) - baseline_start
    async with aiohttp.ClientSession() as http:
        async with http.get(base) as response:
            sid = _sid(await response.text())
        for packet in ("40/dashboard,{}", '42/dashboard,1["subscribe",{"devices":["*"]}]'):
            async with http.post(f"{base}&sid={sid}", data=packet):
                pass
            async with http.get(f"{base}&sid={sid}"):
                pass
        start = rss_mb(pid)
        peak = start
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(1)
            peak = max(peak, rss_mb(pid))
    return peak - start, baseline


def _sid(opened: str) -> str:
    import json

    payload: dict[str, Any] = json.loads(opened[1:])
    return str(payload["sid"])


def measure(connections: int, stall: float) -> dict[str, float]:
    with broker() as mosquitto, hub(mosquitto.url) as running:
        per_connection = idle_connections(running.url, running.process.pid, connections)
        sim = mqtt_fleet(mosquitto.url, 10, 1000 / 30, 3 * stall + 30)
        try:
            time.sleep(3)
            growth, baseline = asyncio.run(stalled_growth(running.url, running.process.pid, stall))
        finally:
            sim.terminate()
            sim.wait(30)
    return {
        "kb_per_idle_connection": per_connection,
        "stalled_growth_mb": growth,
        "no_stall_growth_mb": baseline,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--stall", type=float, default=60.0)
    args = parser.parse_args()
    figures = measure(args.connections, args.stall)
    print(f"machine: {machine()}")
    print(
        f"A. {figures['kb_per_idle_connection']:.1f} KB of hub RSS per idle dashboard "
        f"({args.connections} websocket connections)"
    )
    print(
        f"B. one dashboard stalled for {args.stall:g} s at 1,000 readings/s: RSS grew "
        f"{figures['stalled_growth_mb']:.1f} MB (without it, over the same time: "
        f"{figures['no_stall_growth_mb']:.1f} MB)"
    )


if __name__ == "__main__":
    main()
