"""Hub MQTT ingest ÷ a bare paho-mqtt subscriber, on the same message stream.

Four `mosquitto_pub -l -q 1` publishers send the same file of messages (3
metrics each) to a private Mosquitto. Baseline: `bench.paho_baseline`
counting them. Hub: the messages stored, acknowledged after the commit, and
broadcast to 10 connected websocket dashboards (Node.js socket.io-client, so
the clients are not what limits). Each figure is messages per second from the
first message to the last one handled.

    python -m bench.ingest_ratio [--messages 200000]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.harness import ROOT, broker, hub, machine

PUBLISHERS = 4
DASHBOARDS = 10
STALL_TIMEOUT = 30.0  # s without a new reading stored: the run failed
CLIENTS = ROOT / "bench" / "node" / "clients.js"


def message_file(per_publisher: int) -> Path:
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as lines:
        for i in range(per_publisher):
            lines.write(f'{{"temperature": {20 + i % 10}, "humidity": 40, "pressure": 1013}}\n')
    return Path(lines.name)


def publish(port: int, lines: Path, name: str = "ingest") -> list[subprocess.Popen[bytes]]:
    """`PUBLISHERS` mosquitto_pub processes, each sending every line of
    `lines` at QoS 1 as device `<name>-<k>`, as fast as the broker takes them."""
    with contextlib.ExitStack() as files:
        return [
            subprocess.Popen(
                [
                    "mosquitto_pub",
                    "-p",
                    str(port),
                    "-q",
                    "1",
                    "-l",
                    "-t",
                    f"devices/{name}-{k}/telemetry",
                ],
                stdin=files.enter_context(lines.open("rb")),
            )
            for k in range(PUBLISHERS)
        ]


def paho_rate(port: int, lines: Path, total: int) -> float:
    baseline = subprocess.Popen(
        [sys.executable, "-m", "bench.paho_baseline", str(port), str(total)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert baseline.stdout is not None
    assert baseline.stdout.readline().strip() == "ready"
    for publisher in publish(port, lines):
        publisher.wait(600)
    out, _ = baseline.communicate(timeout=600)
    return float(out.strip().splitlines()[-1])


def hub_rate(mqtt_url: str, port: int, lines: Path, total: int) -> float:
    with hub(mqtt_url) as running:
        dashboards = subprocess.Popen(
            ["node", str(CLIENTS), running.url, str(DASHBOARDS), "websocket"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert dashboards.stdout is not None
        assert "ready" in dashboards.stdout.readline()
        before = running.head()
        rate = stored_rate(lambda: (running.head() - before) // 3, publish(port, lines), total)
        dashboards.terminate()
        dashboards.wait(10)
    return rate


def stored_rate(
    stored: Callable[[], int], publishers: list[subprocess.Popen[bytes]], total: int
) -> float:
    """Messages/s from the first stored (as `stored()` counts them) to the
    `total`-th; fails when nothing more is stored for STALL_TIMEOUT."""
    started = time.monotonic()
    first = None
    stalled_since, seen = time.monotonic(), 0
    while (count := stored()) < total:
        if first is None and count > 0:
            first = time.monotonic()
        if count != seen:
            stalled_since, seen = time.monotonic(), count
        elif time.monotonic() - stalled_since > STALL_TIMEOUT:
            raise RuntimeError(
                f"{count:,} of {total:,} messages stored and nothing more for {STALL_TIMEOUT:g} s"
            )
        time.sleep(0.02)
    elapsed = time.monotonic() - (first or started)
    for publisher in publishers:
        publisher.wait(60)
    return total / elapsed


def measure(messages: int) -> dict[str, float]:
    per_publisher = messages // PUBLISHERS
    total = per_publisher * PUBLISHERS
    lines = message_file(per_publisher)
    try:
        with broker() as mosquitto:
            baseline = paho_rate(mosquitto.port, lines, total)
            rate = hub_rate(mosquitto.url, mosquitto.port, lines, total)
    finally:
        lines.unlink()
    return {"paho_msg_s": baseline, "hub_msg_s": rate, "ratio": rate / baseline}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200_000)
    args = parser.parse_args()
    figures = measure(args.messages)
    print(f"machine: {machine()}")
    print(
        f"bare paho subscriber: {figures['paho_msg_s']:,.0f} msg/s; hub (stored, acked after "
        f"commit, {DASHBOARDS} dashboards): {figures['hub_msg_s']:,.0f} msg/s; "
        f"ratio {figures['ratio']:.2f}"
    )


if __name__ == "__main__":
    main()
