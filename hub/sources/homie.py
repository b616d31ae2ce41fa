"""Homie, convention v4.0.0 (https://homieiot.github.io/specification/spec-core-v4_0_0/)
and v3.0.1 where it differs (https://homieiot.github.io/specification/spec-core-v3_0_1/),
root topic `homie` (or the one `base` gives):

- `homie/<device>/<node>/<property>`: a value, as text (`"21.5"`), read by
  the property's `$datatype` (integer and float: numbers; boolean: 1 or 0;
  string, enum, color, datetime, duration: attributes), stored as the
  metric `<node>_<property>` in the property's `$unit` (`°C`, `°F`, `%`,
  `V`, `W`, `A`, `Pa`, `psi`, ...);
- `homie/<device>/<node>/<property>/$unit`, `$datatype`: read and kept;
- `homie/<device>/$state`: `init`, `ready` and `alert` mean connected,
  `disconnected`, `sleeping` and `lost` (the Last Will) mean not;
- other device attributes (`$homie`, `$name`, v3's `$localip`, `$mac`,
  `$implementation`) become attributes (`$name` as `label`);
- v3 only: `homie/<device>/$stats/<stat>` (uptime, signal, cputemp, battery,
  ...) are readings `stats_<stat>`, `$fw/name` and `$fw/version` attributes.

Homie publishes everything retained, so on (re)subscribing the broker hands
over every last value again: those are the devices' last states, of unknown
age, and are not stored as new readings (their attributes and units are).
"""

from __future__ import annotations

from typing import Any

from hub.config import SourceSettings
from hub.sources.base import (
    Availability,
    Decoded,
    Preset,
    Refused,
    Subscription,
    Telemetry,
    scalar,
    text_of,
)

CONNECTED = frozenset({"init", "ready", "alert"})
DISCONNECTED = frozenset({"disconnected", "sleeping", "lost"})
TEXT_TYPES = frozenset({"string", "enum", "color", "datetime", "duration"})
PROPERTIES_MAX = 500_000  # units and datatypes kept, for all devices together
_STATS_UNITS = {"uptime": "s", "cputemp": "°C", "signal": "%", "battery": "%", "supply": "V"}
_DEVICE_ATTRIBUTES = {
    "$homie": "homie",
    "$name": "label",
    "$implementation": "implementation",
    "$localip": "localip",
    "$mac": "mac",
}


class Homie(Preset):
    """The `homie` preset."""

    label = "homie"
    default_base = "homie"

    def __init__(self, settings: SourceSettings):
        super().__init__(settings)
        # (device, node, property) -> "$unit" / "$datatype" as published
        self.unit: dict[tuple[str, str, str], str] = {}
        self.datatype: dict[tuple[str, str, str], str] = {}

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription(f"{self.root}+/+", telemetry=False),  # device attributes, $state
            Subscription(f"{self.root}+/+/+", telemetry=True),  # values; v3 $stats, $fw
            Subscription(f"{self.root}+/+/+/+", telemetry=False),  # property attributes
        ]

    def device_topics(self, device_id: str) -> tuple[list[str], list[str]]:
        return [f"{self.base}/{device_id}/#"], [f"{self.base}/{device_id}/+/+/set"]

    def decode(self, topic: str, payload: bytes, retained: bool) -> list[Decoded] | None:
        if not topic.startswith(self.root):
            return None
        # [device, ...]: the levels under the root, whatever levels it has
        parts = topic[len(self.root) :].split("/")
        if len(parts) < 2 or len(parts) > 4 or parts[0].startswith("$"):
            return None
        device = parts[0]
        text = text_of(payload)
        if text is None:
            return [Refused(device, "a Homie payload must be UTF-8 text")]
        if len(parts) == 2:
            return self._device_attribute(device, parts[1], text)
        if len(parts) == 4:
            self._property_attribute(device, parts[1], parts[2], parts[3], text)
            return []
        node, prop = parts[1], parts[2]
        if node in ("$stats", "$fw"):
            return self._legacy(device, node, prop, text)
        if node.startswith("$") or prop.startswith("$"):
            return []  # node attributes ($name, $type, $properties)
        return self._value(device, node, prop, text)

    def _device_attribute(self, device: str, name: str, text: str) -> list[Decoded]:
        if name == "$state":
            state = text.strip()
            if state in CONNECTED or state in DISCONNECTED:
                return [  # the attribute first, so that "lost" leaves the device offline
                    Telemetry(device, {"state": state}),
                    Availability(device, state in CONNECTED),
                ]
            return [Refused(device, f"$state {state[:40]!r} is not a Homie state")]
        attribute = _DEVICE_ATTRIBUTES.get(name)
        if attribute is None or not text:
            return []  # $nodes, $extensions, $stats (v3's list), ...
        return [Telemetry(device, {attribute: text})]

    def _property_attribute(self, device: str, node: str, prop: str, name: str, text: str) -> None:
        key = (device, node, prop)
        table = {"$unit": self.unit, "$datatype": self.datatype}.get(name)
        if table is None:
            return  # $name, $settable, $format, set (a command) ...
        if len(self.unit) + len(self.datatype) >= PROPERTIES_MAX and key not in table:
            return
        if text:
            table[key] = text.strip()
        else:
            table.pop(key, None)

    def _value(self, device: str, node: str, prop: str, text: str) -> list[Decoded]:
        datatype = self.datatype.get((device, node, prop))
        value: Any
        if datatype in TEXT_TYPES:
            value = text
        elif datatype == "boolean":
            if text not in ("true", "false"):
                return [Refused(device, f"{node}/{prop}: {text[:40]!r} is not true or false")]
            value = text == "true"
        elif datatype in ("integer", "float"):
            value = scalar(text)
            if isinstance(value, str | bool):
                return [Refused(device, f"{node}/{prop}: {text[:40]!r} is not a {datatype}")]
        else:
            value = scalar(text) if text else text  # no $datatype seen (yet)
        unit = self.unit.get((device, node, prop))
        if unit and not isinstance(value, str):
            value = {"value": value, "unit": unit}
        return [Telemetry(device, {node: {prop: value}}, self.units)]

    def _legacy(self, device: str, node: str, name: str, text: str) -> list[Decoded]:
        """v3's `$stats/<stat>` readings and `$fw/<name>` attributes."""
        if node == "$fw":
            return [Telemetry(device, {f"fw_{name}": text})] if text else []
        value = scalar(text)
        if isinstance(value, str | bool):
            return [Refused(device, f"$stats/{name}: {text[:40]!r} is not a number")]
        unit = _STATS_UNITS.get(name)
        return [
            Telemetry(device, {"stats": {name: {"value": value, "unit": unit} if unit else value}})
        ]
