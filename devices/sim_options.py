"""The command line of `telemetry-sim`: its options, parsed and checked."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass

from devices.buffer import DROP_POLICIES, DropPolicy
from devices.firmware import FIRMWARES

PROTOCOLS = ("mqtt", "socketio", "http")


@dataclass(frozen=True, slots=True)
class Options:
    devices: int
    rate: float
    protocol: str
    duration: float
    broker: str
    hub: str
    metrics: tuple[str, ...]
    prefix: str
    id_prefix: str
    token: str
    seed: int | None
    quiet: bool
    transports: list[str] | None = None
    buffer: int = 10_000
    buffer_policy: DropPolicy = "drop_oldest"
    flush_rate: float = 100.0
    offline_every: float | None = None
    offline_for: float | None = None
    firmware: str | None = None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(text)
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(text)
    return value


def _transports(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not names or not set(names) <= {"polling", "websocket"}:
        raise ValueError(text)
    return names


def _metrics(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(","))
    if not all(names):
        raise ValueError(text)
    return names


# argparse names the type function in its error message.
_positive_int.__name__ = "positive integer"
_count.__name__ = "whole number (0 or more)"
_positive_float.__name__ = "positive number"
_seconds.__name__ = "number of seconds (0 or more)"
_metrics.__name__ = "comma-separated list of metric names"
_transports.__name__ = "comma-separated list of polling, websocket"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telemetry-sim",
        description="Simulate a fleet of devices sending telemetry to the telemetry hub.",
        epilog=(
            "At exit it prints one line on stdout: sent=N acknowledged=N errors=N "
            "duration=S rate=R msg/s readings=N buffered=N dropped=N commands=N. 'sent' "
            "counts messages made and handed to a device, 'acknowledged' those the broker "
            "(MQTT) or hub (Socket.IO, HTTP) took, directly or later from the buffer, "
            "'readings' = acknowledged messages x metrics, 'buffered' messages kept while "
            "a link was down, 'dropped' those a full buffer gave up, 'commands' the hub's "
            "commands answered (over MQTT and Socket.IO devices answer ping, get_rate and "
            "set_rate). Exit status: 0 if every message was delivered or buffered and none "
            "was refused or left unsent, 1 otherwise, 2 for bad arguments. With --firmware, "
            "'sent' counts the publishes of the devices' reports (a report may be several, "
            "each acknowledged at QoS 1) and 'readings' the values in those acknowledged."
        ),
    )
    add = parser.add_argument
    add("--devices", type=_positive_int, default=5, help="number of devices (default 5)")
    add(
        "--rate",
        type=_positive_float,
        default=1.0,
        help="messages per second PER DEVICE, fractions allowed; each message carries "
        "one value per metric (default 1)",
    )
    add("--protocol", choices=PROTOCOLS, default="mqtt", help="transport (default mqtt)")
    add(
        "--duration",
        type=_seconds,
        default=0.0,
        help="seconds to run; 0 runs until Ctrl-C or SIGTERM (default 0)",
    )
    add(
        "--broker",
        default="mqtt://127.0.0.1:1883",
        help="MQTT broker URL, user:pass@ allowed, mqtts:// for TLS (default %(default)s)",
    )
    add(
        "--hub",
        default="http://127.0.0.1:8080",
        help="hub URL for Socket.IO and HTTP (default %(default)s)",
    )
    add(
        "--metrics",
        type=_metrics,
        default=("temperature", "humidity", "pressure"),
        help="comma-separated metrics (default temperature,humidity,pressure); known: "
        "temperature, humidity, pressure, voltage, power, co2; others get a unitless walk",
    )
    add("--prefix", default="devices", help="MQTT topic prefix (default devices)")
    add("--id-prefix", default="sim", help="devices are named ID_PREFIX-000, ... (default sim)")
    add("--token", default="", help="device token for Socket.IO and HTTP")
    add(
        "--transports",
        type=_transports,
        default=None,
        help="Socket.IO transports, e.g. polling where websockets are blocked "
        "(default: polling, then upgrade to websocket)",
    )
    add(
        "--seed",
        type=int,
        default=None,
        help="seed for the signals and outages: the same seed gives each device the same "
        "level, phase, random draws and outage times (values still follow the wall clock)",
    )
    add("--quiet", action="store_true", help="no progress on stderr")
    add(
        "--buffer",
        type=_count,
        default=10_000,
        help="messages each device keeps while its link is down, to deliver later; "
        "0 turns buffering off, and failed sends then count as errors (default 10000)",
    )
    add(
        "--buffer-policy",
        choices=DROP_POLICIES,
        default="drop_oldest",
        help="what a full buffer gives up (default drop_oldest)",
    )
    add(
        "--flush-rate",
        type=_positive_float,
        default=100.0,
        help="messages per second PER DEVICE that a reconnected device flushes from its "
        "buffer (default 100)",
    )
    add(
        "--offline-every",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="simulate outages: each device closes its link about every SECONDS "
        "(staggered and jittered per device) and keeps making messages; needs --offline-for",
    )
    add(
        "--offline-for",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="how long each simulated outage lasts; less than --offline-every",
    )
    add(
        "--firmware",
        choices=FIRMWARES,
        default=None,
        help="publish as this firmware does, for the hub's [[mqtt.sources]] presets, instead "
        "of PREFIX/ID/telemetry: its topics, payloads, units, retained announcements and "
        "Last Will; MQTT only. The devices report what that firmware's sensors read "
        "(temperature and humidity; pressure, battery, Wi-Fi or motion where it has them) at "
        "--rate; --metrics, --prefix and --buffer do not apply, nor commands",
    )
    return parser


def parse_options(argv: Sequence[str] | None) -> Options:
    """The options, or SystemExit(2) with a usage message for bad arguments."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.offline_every is None) != (args.offline_for is None):
        parser.error("--offline-every and --offline-for go together")
    if args.offline_every is not None and args.offline_for >= args.offline_every:
        parser.error("--offline-for must be less than --offline-every")
    if args.firmware is not None and args.protocol != "mqtt":
        parser.error(
            f"--firmware publishes over MQTT; it cannot go with --protocol {args.protocol}"
        )
    if args.firmware is not None and args.offline_every is not None:
        parser.error("--offline-every does not go with --firmware")
    return Options(**vars(args))
