"""What every simulated firmware shares: the messages it publishes, the
sample its sensors take, and the interface devices/firmware_sim.py drives."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publish; `values` counts the readings the hub stores from it."""

    topic: str
    payload: bytes
    retain: bool = False
    values: int = 0


@dataclass(frozen=True, slots=True)
class Sample:
    """What one device's sensors read at one moment."""

    time: float  # epoch seconds
    temperature: float  # °C
    humidity: float  # %
    pressure: float  # hPa
    battery: int = 100  # %
    voltage: int = 3000  # mV, the battery's
    linkquality: int = 150  # Zigbee LQI, 0-255
    rssi: int = -60  # Wi-Fi, dBm
    motion: bool = False
    uptime: int = 0  # seconds since the device started


class Firmware(Protocol):
    """One MQTT client of a firmware, and the devices it speaks for."""

    @property
    def client_id(self) -> str: ...

    @property
    def devices(self) -> tuple[str, ...]:
        """The names the firmware gives its devices."""

    def will(self) -> Message: ...

    def hello(self) -> list[Message]: ...

    def report(self, device: str, sample: Sample) -> list[Message]: ...

    def goodbye(self) -> list[Message]: ...


def slug(text: str) -> str:
    """`text` as lowercase a-z, 0-9 and inner hyphens (Homie ids, ESPHome names)."""
    return _NOT_SLUG.sub("-", text.lower()).strip("-") or "device"


def fake_mac(name: str) -> str:
    """A MAC address (12 hex digits) of its own for each device name."""
    return hashlib.sha256(name.encode()).hexdigest()[:12]


def to_json(document: Any, *, sort: bool = False) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS if sort else 0)


def count_values(document: Any) -> int:
    """How many readings a JSON document holds (numbers and booleans)."""
    if isinstance(document, dict):
        return sum(count_values(value) for value in document.values())
    return int(isinstance(document, int | float))
