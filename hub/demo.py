"""`make run`: the hub on config.toml, a broker if none answers, five simulated
devices, and the dashboard's address. Ctrl-C stops everything, devices first,
then the hub (which drains), then the broker it started.

Over MQTT a mixed fleet joins them: two more devices for each firmware the hub
has a `[[mqtt.sources]]` preset for (Tasmota, Zigbee2MQTT, Homie, ESPHome),
each publishing as that firmware does; the hub gets the four presets (in
HUB_MQTT__SOURCES, beside any sources config.toml has).

    python -m hub.demo [--config PATH] [--devices 5] [--rate 1] [--firmware-devices 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from hub.config import PRESETS, SourceSettings, config_path, load_settings
from hub.errors import ConfigError

INSTALL_HINT = (
    "install Mosquitto (Debian/Ubuntu: sudo apt install mosquitto; macOS: brew install "
    "mosquitto), or point HUB_MQTT__URL at a broker"
)


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_mosquitto(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    log = (folder / "mosquitto.log").open("ab")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log, process_group=0)
    log.close()
    deadline = time.monotonic() + 5
    while not answers("127.0.0.1", port):
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit(f"mosquitto did not start; see {folder / 'mosquitto.log'}")
        time.sleep(0.05)
    return process, port


def wait_ready(url: str, hub: subprocess.Popen[bytes], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if hub.poll() is not None:
            raise SystemExit(f"the hub exited with code {hub.returncode}; see its log above")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"the hub did not become ready at {url}/readyz")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hub.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="PATH")
    parser.add_argument("--devices", type=int, default=5)
    parser.add_argument("--rate", type=float, default=1.0, help="messages/s per device")
    parser.add_argument(
        "--firmware-devices",
        type=int,
        default=2,
        metavar="N",
        help="devices per firmware (Tasmota, Zigbee2MQTT, Homie, ESPHome) over MQTT; 0: none",
    )
    args = parser.parse_args(argv)
    path = config_path(args.config, os.environ)
    try:
        settings = load_settings(path if path.exists() else None)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2

    environment = dict(os.environ)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    scratch = Path(tempfile.mkdtemp(prefix="telemetry-hub-demo-"))
    protocol = "mqtt"
    broker = settings.mqtt.url
    url = urlsplit(broker)
    if not settings.mqtt.enabled:
        protocol = "http"
    elif answers(url.hostname or "127.0.0.1", url.port or 1883):
        print(f"MQTT: using the broker at {broker}")
    elif shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists():
        process, port = start_mosquitto(scratch)
        children.append(("mosquitto", process))
        broker = f"mqtt://127.0.0.1:{port}"
        environment["HUB_MQTT__URL"] = broker
        print(f"MQTT: nothing answers at {settings.mqtt.url}; started mosquitto at {broker}")
    else:
        print(
            f"MQTT: nothing answers at {settings.mqtt.url} and mosquitto is not installed:\n"
            f"      {INSTALL_HINT}.\n      Running without MQTT; devices send over HTTP."
        )
        environment["HUB_MQTT__ENABLED"] = "false"
        protocol = "http"

    firmwares = PRESETS if protocol == "mqtt" and args.firmware_devices > 0 else ()
    if firmwares:
        environment["HUB_MQTT__SOURCES"] = with_presets(settings.mqtt.sources)

    port = settings.server.port
    if answers(settings.server.host, port):
        port = free_port()
        print(f"HTTP: port {settings.server.port} is taken; using {port}")
        environment["HUB_SERVER__PORT"] = str(port)
    hub_url = f"http://{settings.server.host}:{port}"

    hub_command = [sys.executable, "-m", "hub.cli", "serve"]
    if path.exists():
        hub_command += ["--config", str(path)]
    try:
        # Children get their own process group, so Ctrl-C reaches only us and
        # we stop them in order.
        hub = subprocess.Popen(hub_command, env=environment, process_group=0)
        children.append(("hub", hub))
        wait_ready(hub_url, hub)
        sim = simulator(args.devices, args.rate, protocol, broker, hub_url, environment)
        children.append(("devices", sim))
        for firmware in firmwares:
            sim = simulator(
                args.firmware_devices, args.rate, protocol, broker, hub_url, environment, firmware
            )
            children.append((f"devices ({firmware})", sim))
        mixed = (
            f", and {args.firmware_devices} more per firmware publish as {', '.join(firmwares)} do"
            if firmwares
            else ""
        )
        print(
            f"\n  Dashboard: {hub_url}/\n\n  {args.devices} simulated devices send over "
            f"{protocol}{mixed}. Ctrl-C stops everything.\n",
            flush=True,
        )
        return run_until_interrupted(children)
    except KeyboardInterrupt:
        print("\nstopping: devices, then the hub (draining), then the broker")
        return 0
    finally:
        stop_all(children)
        shutil.rmtree(scratch, ignore_errors=True)


def run_until_interrupted(children: list[tuple[str, subprocess.Popen[bytes]]]) -> int:
    """Until Ctrl-C or SIGTERM (KeyboardInterrupt), or a child ends early (1)."""
    signal.signal(signal.SIGTERM, _interrupt)
    while all(process.poll() is None for _, process in children):
        time.sleep(0.5)
    failed = [name for name, process in children if process.poll() is not None]
    print(f"stopped early: {', '.join(failed)}", file=sys.stderr)
    return 1


def stop_all(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    """Stop the children, last started first: SIGINT (a hub drains), or
    SIGTERM for the services; killed after 15 s."""
    for name, process in reversed(children):
        if process.poll() is None:
            hub_or_devices = name.startswith(("hub", "devices"))
            process.send_signal(signal.SIGINT if hub_or_devices else signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in 15 s; killing it", file=sys.stderr)
                process.kill()
                process.wait()


def simulator(
    devices: int,
    rate: float,
    protocol: str,
    broker: str,
    hub_url: str,
    env: dict[str, str],
    firmware: str | None = None,
) -> subprocess.Popen[bytes]:
    """`telemetry-sim` with `devices` devices (of `firmware`), until stopped."""
    command = [sys.executable, "-m", "devices.sim", "--devices", str(devices)]
    command += ["--rate", str(rate), "--protocol", protocol, "--broker", broker]
    command += ["--hub", hub_url, "--duration", "0", "--quiet"]
    if firmware is not None:
        command += ["--firmware", firmware]
    return subprocess.Popen(command, env=env, process_group=0)


def with_presets(sources: tuple[SourceSettings, ...]) -> str:
    """HUB_MQTT__SOURCES: the sources configured, and each firmware preset
    they lack, as a JSON array of tables."""
    tables: list[dict[str, object]] = [
        {
            "preset": source.preset,
            "topic": source.topic,
            "format": source.format,
            "units": dict(source.units),
            "group": source.group,
        }
        for source in sources
    ]
    configured = {source.preset for source in sources}
    tables += [{"preset": preset} for preset in PRESETS if preset not in configured]
    return json.dumps(tables)


if __name__ == "__main__":
    raise SystemExit(main())
