"""Readings per second the hub stores from telemetry-sim over MQTT (QoS 1).

The simulator offers more than the hub can take; the figure is the hub's
store head over the measured window, after a warm-up. Everything runs on
this machine: broker, hub and simulator compete for the same cores.

    python -m bench.ingest [--devices 50] [--rate 200] [--seconds 15]
"""

from __future__ import annotations

import argparse
import time

from bench.harness import broker, hub, machine, mqtt_fleet, summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--rate", type=float, default=200.0, help="messages/s per device")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args()
    metrics = "temperature,humidity,pressure"
    with broker() as mosquitto, hub(mosquitto.url) as running:
        sim = mqtt_fleet(
            mosquitto.url, args.devices, args.rate, args.warmup + args.seconds + 1, metrics
        )
        time.sleep(args.warmup)
        start_head, start = running.head(), time.monotonic()
        time.sleep(args.seconds)
        end_head, end = running.head(), time.monotonic()
        out, _ = sim.communicate(timeout=120)
        sent = summary(out)
        # let the hub finish what was sent, to report how far behind it ran
        deadline = time.monotonic() + 60
        while running.head() < sent["readings"] and time.monotonic() < deadline:
            time.sleep(0.2)
        final = running.head()
    stored_rate = (end_head - start_head) / (end - start)
    print(f"machine: {machine()}")
    print(
        f"offered: {args.devices} devices x {args.rate:g} msg/s x 3 metrics "
        f"= {args.devices * args.rate * 3:,.0f} readings/s"
    )
    print(
        f"simulator sent: {sent['sent']:,.0f} messages at {sent['rate']:,.0f} msg/s "
        f"({sent['rate'] * 3:,.0f} readings/s)"
    )
    print(
        f"hub stored: {stored_rate:,.0f} readings/s ({stored_rate / 3:,.0f} msg/s) "
        f"over {end - start:.1f} s; total {final:,} of {sent['readings']:,.0f} sent"
    )


if __name__ == "__main__":
    main()
