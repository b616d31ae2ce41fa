"""Zigbee2MQTT (https://www.zigbee2mqtt.io/guide/usage/mqtt_topics_and_messages.html),
base topic `zigbee2mqtt` (its `mqtt.base_topic`, or the one `base` gives):

- `zigbee2mqtt/<friendly name>`: the device's state, always a JSON object
  (`{"temperature": 27.34, "humidity": 44.72}`); a friendly name may hold
  `/` (`kitchen/floor_light`), spaces and any Unicode, so it is mapped to a
  device id (`hub.sources.names`) and kept as the `name` attribute;
- `zigbee2mqtt/<friendly name>/availability`: `online` / `offline`, or
  `{"state": "online"}` (the JSON form, the only one since 2.0), retained;
- `zigbee2mqtt/bridge/...` is the bridge itself and never a device;
  `bridge/devices` (retained) describes each device, with the unit of each
  value it exposes, which the hub reads: `voltage` is mV on a battery
  sensor but V on a mains plug;
- `zigbee2mqtt/bridge/state` is the bridge's own `{"state": "online"}` /
  `"offline"` (its Last Will, retained). A device reaches MQTT only through
  the bridge, and when the bridge dies the broker updates this topic alone
  (each device's `availability` keeps its last value): so the bridge going
  offline takes offline every device the hub heard from through it, as Home
  Assistant's discovery does (availability `all` of bridge and device).
  Devices come back by their own availability, which the bridge publishes
  again on start, or with their next reading.
- `/set`, `/get` (commands to a device) are not readings.

Without a description, units are those of the docs' device pages:
temperature °C, humidity %, pressure hPa, voltage mV, battery %, illuminance
lx, power W, energy kWh, current A. `null` (a value the device has not
reported) is skipped, and so is `last_seen` (the bridge's clock, not a value).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from hub.config import SourceSettings
from hub.sources.base import (
    Availability,
    Decoded,
    Preset,
    Refused,
    Subscription,
    Telemetry,
    text_of,
)

DOCUMENTED_UNITS: Mapping[str, str] = {
    "temperature": "°C",
    "device_temperature": "°C",
    "local_temperature": "°C",
    "humidity": "%",
    "pressure": "hPa",
    "voltage": "mV",
    "battery": "%",
    "illuminance": "lx",
    "illuminance_lux": "lx",
    "power": "W",
    "energy": "kWh",
    "current": "A",
    "linkquality": "lqi",
}
_COMMANDS = ("set", "get")
_SKIPPED = ("last_seen",)
DESCRIBED_MAX = 100_000  # devices whose exposed units are kept
HEARD_MAX = 100_000  # devices taken offline with the bridge


class Zigbee2Mqtt(Preset):
    """The `zigbee2mqtt` preset."""

    label = "zigbee2mqtt"
    default_base = "zigbee2mqtt"

    def __init__(self, settings: SourceSettings):
        super().__init__(settings)
        # friendly name -> property -> unit, from bridge/devices
        self.described: dict[str, dict[str, str]] = {}
        # friendly names heard from, in this run (a dict keeps their order)
        self.heard: dict[str, None] = {}

    @property
    def bridge_user(self) -> str:
        """The bridge's broker user: its base topic, `/` made `-`."""
        return self.base.replace("/", "-")

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(f"{self.base}/#", telemetry=True),
            # Every hub of a cluster needs the units and the bridge's state (the
            # line above may be shared): each offlines the devices it heard.
            Subscription(f"{self.base}/bridge/devices", telemetry=False),
            Subscription(f"{self.base}/bridge/state", telemetry=False),
        ]

    def decode(self, topic: str, payload: bytes, retained: bool) -> list[Decoded] | None:
        if not topic.startswith(self.root):
            return None
        rest = topic[len(self.root) :]
        if rest == "bridge" or rest.startswith("bridge/"):
            if rest == "bridge/devices":
                self._describe(payload)
            elif rest == "bridge/state" and _state(payload) == "offline":
                return [Availability(name, False) for name in self.heard]
            return []
        name, _, last = rest.rpartition("/")
        if (name and last in _COMMANDS) or "/set/" in rest or "/get/" in rest:
            return []
        if name and last == "availability":
            self._hear(name)
            return [self._availability(name, payload)]
        self._hear(rest)
        try:
            document = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return [Telemetry(rest, payload)]  # the normalizer says why
        if not isinstance(document, dict):
            return [Telemetry(rest, document)]
        values = {k: v for k, v in document.items() if v is not None and k not in _SKIPPED}
        if not values:
            return []
        return [Telemetry(rest, values, self._units(rest))]

    def _hear(self, name: str) -> None:
        if len(self.heard) < HEARD_MAX:
            self.heard[name] = None

    def _availability(self, name: str, payload: bytes) -> Decoded:
        state = _state(payload)
        if state in ("online", "offline"):
            return Availability(name, state == "online")
        return Refused(name, 'availability must be online/offline or {"state": ...}')

    def _units(self, name: str) -> dict[str, str]:
        units = dict(DOCUMENTED_UNITS)
        units.update(self.described.get(name, {}))
        units.update(self.units)
        return units

    def _describe(self, payload: bytes) -> None:
        """The units each device exposes, from the retained `bridge/devices`."""
        try:
            devices = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if not isinstance(devices, list):
            return
        described: dict[str, dict[str, str]] = {}
        for device in devices[:DESCRIBED_MAX]:
            if not isinstance(device, dict) or not isinstance(device.get("friendly_name"), str):
                continue
            definition = device.get("definition")
            exposes = definition.get("exposes") if isinstance(definition, dict) else None
            units = dict(_exposed_units(exposes if isinstance(exposes, list) else []))
            if units:
                described[device["friendly_name"]] = units
        self.described = described


def _state(payload: bytes) -> str:
    """`online` from `online` or `{"state": "online"}` (the JSON form, the
    only one since 2.0), and so on; "" when it is neither form."""
    text = (text_of(payload) or "").strip()
    if text.startswith("{"):
        try:
            state = orjson.loads(text).get("state")
        except (orjson.JSONDecodeError, AttributeError):
            state = None
        text = state if isinstance(state, str) else ""
    return text


def _exposed_units(exposes: Iterable[Any]) -> Iterable[tuple[str, str]]:
    """(property, unit) of each exposed value, features of composite ones included."""
    for expose in exposes:
        if not isinstance(expose, dict):
            continue
        prop, unit = expose.get("property"), expose.get("unit")
        if isinstance(prop, str) and isinstance(unit, str) and unit:
            yield prop, unit
        features = expose.get("features")
        if isinstance(features, list):
            yield from _exposed_units(features)
