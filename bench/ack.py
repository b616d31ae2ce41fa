"""Sustained MQTT QoS 1 ingest: acknowledging after the commit versus on
receipt, and the effect of the in-flight window (Receive Maximum).

Four `mosquitto_pub -l -q 1` publishers send the same number of messages
(3 metrics each) as fast as the broker takes them; the figure is messages per
second from the first publish until the hub's store holds all of them.

    python -m bench.ack [--messages 100000]
"""

from __future__ import annotations

import argparse
import time

from bench.harness import broker, hub, machine
from bench.ingest_ratio import PUBLISHERS, message_file, publish


def run(mqtt_url: str, port: int, messages: int, **overrides: str) -> float:
    per_publisher = messages // PUBLISHERS
    lines = message_file(per_publisher)
    try:
        with hub(mqtt_url, **overrides) as running:
            expected = running.head() + per_publisher * PUBLISHERS * 3
            started = time.monotonic()
            for publisher in publish(port, lines, "ack"):
                publisher.wait(600)
            while running.head() < expected:
                time.sleep(0.05)
            elapsed = time.monotonic() - started
    finally:
        lines.unlink()
    return per_publisher * PUBLISHERS / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with broker() as mosquitto:
        cases = [
            ("ack on receipt (automatic)", {"MQTT__ACK": "on_receipt"}),
            ("ack after commit, receive_maximum 1000", {"MQTT__RECEIVE_MAXIMUM": "1000"}),
            ("ack after commit, receive_maximum 100", {"MQTT__RECEIVE_MAXIMUM": "100"}),
            ("ack after commit, receive_maximum 20", {"MQTT__RECEIVE_MAXIMUM": "20"}),
            (
                "ack after commit, MQTT 3.1.1 (broker's in-flight window)",
                {"MQTT__PROTOCOL": "3.1.1"},
            ),
        ]
        results = {}
        for name, overrides in cases:
            results[name] = run(mosquitto.url, mosquitto.port, args.messages, **overrides)
            print(f"{name}: {results[name]:,.0f} msg/s ({results[name] * 3:,.0f} readings/s)")
    baseline = results[cases[0][0]]
    for name, _ in cases[1:]:
        print(f"{name} / on receipt: {results[name] / baseline:.2f}")


if __name__ == "__main__":
    main()
