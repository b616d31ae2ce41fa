"""Pieces the benchmarks share: a private broker, the hub as its own process,
the simulator, and percentiles."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.brokers import Mosquitto, free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Hub:
    url: str
    process: subprocess.Popen[bytes]
    db: Path

    def head(self) -> int:
        with urllib.request.urlopen(self.url + "/readyz", timeout=5) as response:
            return int(json.load(response)["store"]["head"])


@contextlib.contextmanager
def broker() -> Iterator[Mosquitto]:
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as folder:
        # No queue limit: publishers here outrun any QoS 1 subscriber for a
        # while, and a broker that drops would measure nothing.
        mosquitto = Mosquitto(
            Path(folder), free_port(), extra_config="max_inflight_messages 1000\n", max_queued=0
        )
        mosquitto.start()
        try:
            yield mosquitto
        finally:
            mosquitto.stop()


@contextlib.contextmanager
def hub(mqtt_url: str, **overrides: str) -> Iterator[Hub]:
    """`telemetry-hub serve` in its own process, on its own store and port."""
    with tempfile.TemporaryDirectory(prefix="bench-hub-") as folder:
        port = free_port()
        db = Path(folder) / "hub.db"
        env = {
            **os.environ,
            "HUB_CONFIG": str(ROOT / "config.toml"),
            "HUB_SERVER__PORT": str(port),
            "HUB_STORAGE__PATH": str(db),
            "HUB_MQTT__URL": mqtt_url,
            "HUB_MQTT__CLIENT_ID": f"bench-{port}",
            "HUB_LOG__LEVEL": "warning",
            "HUB_LIMITS__DEVICE_RATE": "0",  # benchmarks push devices past any sane rate
            **{f"HUB_{k.upper()}": v for k, v in overrides.items()},
        }
        process = subprocess.Popen([sys.executable, "-m", "hub.cli", "serve"], env=env)
        try:
            wait_for_port(port, 20)
            running = Hub(f"http://127.0.0.1:{port}", process, db)
            deadline = time.monotonic() + 20
            while True:
                with urllib.request.urlopen(running.url + "/readyz", timeout=5) as response:
                    state = json.load(response)["ingest"]["mqtt"]["state"]
                if state == "connected" or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            yield running
        finally:
            process.send_signal(2)
            process.wait(30)


def simulator(args: Sequence[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "devices.sim", "--quiet", *args], stdout=subprocess.PIPE
    )


def mqtt_fleet(
    broker_url: str,
    devices: int,
    rate: float,
    seconds: float,
    metrics: str = "temperature,humidity,pressure",
) -> subprocess.Popen[bytes]:
    """telemetry-sim over MQTT: `devices` devices, each sending `rate`
    messages a second (one value of each of `metrics`) for `seconds`."""
    return simulator(
        [
            "--devices",
            str(devices),
            "--rate",
            f"{rate:.4f}",
            "--duration",
            f"{seconds:g}",
            "--protocol",
            "mqtt",
            "--broker",
            broker_url,
            "--metrics",
            metrics,
        ]
    )


def summary(output: bytes) -> dict[str, float]:
    line = [x for x in output.decode().splitlines() if x.startswith("sent=")][-1]
    return {k: float(v) for k, v in (item.split("=", 1) for item in line.split() if "=" in item)}


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def machine() -> str:
    cores, python = os.cpu_count(), platform.python_version()
    return f"{platform.node()} {platform.machine()}, {cores} cores, Python {python}"
