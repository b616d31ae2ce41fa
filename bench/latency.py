"""Device-to-dashboard latency at a steady rate (default 1,000 readings/s).

Devices (telemetry-sim over MQTT, QoS 1) stamp each message with their
clock in ms; python-socketio dashboards on websocket (10 by default),
subscribed to everything, subtract that from their own clock on arrival.
Same machine, same clock; resolution 1 ms.

    python -m bench.latency [--readings-per-second 1000] [--dashboards 10] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import socketio

from bench.harness import broker, hub, machine, mqtt_fleet, percentile


async def measure(
    url: str, start_sim: Any, seconds: float, warmup: float, dashboards: int = 10
) -> list[float]:
    """Every latency each of `dashboards` clients saw over `seconds`."""
    latencies: list[float] = []
    measuring = False

    def on_readings(frame: dict[str, Any]) -> None:
        now = time.time() * 1000
        if measuring:
            latencies.extend(now - r["ts"] for r in frame["readings"])

    clients = [socketio.AsyncClient(reconnection=False) for _ in range(dashboards)]
    for client in clients:
        client.on("readings", on_readings, namespace="/dashboard")
        await client.connect(url, namespaces=["/dashboard"], transports=["websocket"])
        await client.call("subscribe", {"devices": ["*"]}, namespace="/dashboard")
    sim = start_sim()
    await asyncio.sleep(warmup)  # the measurement window, not a synchronisation
    measuring = True
    await asyncio.sleep(seconds)
    measuring = False
    for client in clients:
        await client.disconnect()
    await asyncio.to_thread(sim.wait, 60)
    return latencies


def measure_rate(
    readings_per_second: float,
    devices: int = 10,
    seconds: float = 20.0,
    warmup: float = 3.0,
    dashboards: int = 10,
) -> list[float]:
    """Latencies (ms) of every reading each of `dashboards` dashboards got
    over `seconds`, on a fresh broker and hub, with `devices` simulated
    devices sending 3 metrics per message at `readings_per_second` in all."""
    rate = readings_per_second / 3 / devices
    with broker() as mosquitto, hub(mosquitto.url) as running:

        def start_sim() -> Any:
            return mqtt_fleet(mosquitto.url, devices, rate, warmup + seconds + 1)

        return asyncio.run(measure(running.url, start_sim, seconds, warmup, dashboards))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readings-per-second", type=float, default=1000.0)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--dashboards", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args()
    latencies = measure_rate(
        args.readings_per_second, args.devices, args.seconds, args.warmup, args.dashboards
    )
    rate = args.readings_per_second / 3 / args.devices
    print(f"machine: {machine()}")
    print(
        f"rate: {args.readings_per_second:,.0f} readings/s ({args.devices} devices x "
        f"{rate:.1f} msg/s x 3 metrics), {args.dashboards} dashboards, "
        f"{len(latencies):,} deliveries measured"
    )
    print(
        "latency ms: "
        + ", ".join(f"p{int(q * 100)} {percentile(latencies, q):.1f}" for q in (0.5, 0.9, 0.99))
        + f", max {max(latencies):.1f}"
    )


if __name__ == "__main__":
    main()
