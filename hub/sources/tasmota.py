"""Tasmota (https://tasmota.github.io/docs/MQTT/), with its default
FullTopic `%prefix%/%topic%/` (or the one `base` gives, such as
`tasmota/%topic%/%prefix%/`; `%hostname%` and `%id%` match any level):

- `tele/<topic>/SENSOR`: sensor readings, JSON, one object per sensor
  (`{"Time": ..., "AM2301": {"Temperature": 24.6, "Humidity": 58.2},
  "TempUnit": "C"}`), stored as groups (`am2301_temperature`);
- `tele/<topic>/STATE`: uptime, heap, load, Wi-Fi (`wifi_rssi`, ...); text
  such as `"POWER": "OFF"` becomes an attribute;
- `tele/<topic>/LWT`: `Online` / `Offline`, retained: the device's presence.

Units as Tasmota reports them: temperatures in `TempUnit` (`C` or `F`,
SetOption8), pressures in `PressureUnit` (`hPa` or `mmHg`, SetOption24), the
ENERGY object as its docs table gives (Total/Today/Yesterday kWh, Period Wh,
Power W, ApparentPower VA, ReactivePower var, Voltage V, Current A).
`Time` is the device's local time without an offset (its Timezone), so it is
not used: a reading's time is `Epoch` (UTC seconds) when the device sends it
(`Time 2`... `Time 4`), else when the hub received it.
"""

from __future__ import annotations

from typing import Any

import orjson

from hub.config import TASMOTA_TOKENS, SourceSettings
from hub.sources.base import (
    Availability,
    Decoded,
    Preset,
    Refused,
    Subscription,
    Telemetry,
    text_of,
)

PREFIX = "tele"  # Prefix3, where telemetry goes (stat: Prefix2, cmnd: Prefix1)
_TEMPERATURE_UNITS = {"C": "Cel", "F": "degF"}
# Keys the firmware uses for values that are temperatures or pressures.
_TEMPERATURES = ("temperature", "dew_point")
_PRESSURES = ("pressure", "sea_pressure")
_FIXED_UNITS = {
    "humidity": "%RH",
    "total": "kWh",
    "today": "kWh",
    "yesterday": "kWh",
    "period": "Wh",
    "power": "W",
    "apparent_power": "VA",
    "reactive_power": "var",
    "voltage": "V",
    "current": "A",
    "illuminance": "lx",
}
_NOT_VALUES = ("Time", "Epoch", "TempUnit", "PressureUnit", "SpeedUnit", "TotalStartTime")


class Tasmota(Preset):
    """The `tasmota` preset."""

    label = "tasmota"
    default_base = "%prefix%/%topic%/"

    def __init__(self, settings: SourceSettings):
        super().__init__(settings)
        self.levels = tuple(self.base.removesuffix("/").split("/"))
        # where decode finds each part of a topic: FullTopic's levels, then the kind
        self._length = len(self.levels) + 1
        self._prefix_at = self.levels.index("%prefix%")
        self._name_at = self.levels.index("%topic%")
        self._fixed = tuple((i, v) for i, v in enumerate(self.levels) if v not in TASMOTA_TOKENS)

    def full_topic(self, prefix: str, device: str) -> str:
        """The FullTopic with its tokens filled in (`+` for the others)."""
        filled = {"%prefix%": prefix, "%topic%": device, "%hostname%": "+", "%id%": "+"}
        return "/".join(filled.get(level, level) for level in self.levels)

    def subscriptions(self) -> list[Subscription]:
        tele = self.full_topic(PREFIX, "+")
        return [
            Subscription(f"{tele}/SENSOR", telemetry=True),
            Subscription(f"{tele}/STATE", telemetry=True),
            Subscription(f"{tele}/LWT", telemetry=False),
        ]

    def device_topics(self, device_id: str) -> tuple[list[str], list[str]]:
        return (
            [f"{self.full_topic('tele', device_id)}/#", f"{self.full_topic('stat', device_id)}/#"],
            [f"{self.full_topic('cmnd', device_id)}/#"],
        )

    def decode(self, topic: str, payload: bytes, retained: bool) -> list[Decoded] | None:
        parts = topic.split("/")
        if len(parts) != self._length or parts[self._prefix_at] != PREFIX:
            return None
        if self._fixed and any(parts[i] != level for i, level in self._fixed):
            return None
        name, kind = parts[self._name_at], parts[-1]
        if not name:
            return None
        if kind == "LWT":
            text = (text_of(payload) or "").strip().lower()
            if text in ("online", "offline"):
                return [Availability(name, text == "online")]
            if not text:
                return []  # a retained LWT being cleared (the topic changed)
            return [Refused(name, "LWT must be Online or Offline")]
        if kind not in ("SENSOR", "STATE"):
            return None
        try:
            document = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return [Telemetry(name, payload)]  # the normalizer says why
        if not isinstance(document, dict):
            return [Telemetry(name, document)]
        return [Telemetry(name, self._envelope(document), self._units(document))]

    def _envelope(self, document: dict[str, Any]) -> dict[str, Any]:
        values = {k: v for k, v in document.items() if k not in _NOT_VALUES}
        epoch = document.get("Epoch")
        if epoch is None and isinstance(document.get("Time"), int):
            epoch = document["Time"]  # `Time 2`: UTC epoch seconds, unquoted
        if isinstance(epoch, int) and not isinstance(epoch, bool):
            return {"ts": epoch, "values": values}
        return values

    def _units(self, document: dict[str, Any]) -> dict[str, str]:
        units = dict(_FIXED_UNITS)
        temperature = _TEMPERATURE_UNITS.get(str(document.get("TempUnit", "C")).upper())
        for key in _TEMPERATURES:
            units[key] = temperature or str(document.get("TempUnit"))
        pressure = document.get("PressureUnit", "hPa")
        for key in _PRESSURES:
            units[key] = str(pressure)
        units.update(self.units)
        return units
