"""ESPHome's MQTT component (https://esphome.io/components/mqtt.html), with
the default `topic_prefix` (the node's name) and discovery prefix
`homeassistant` (its `discovery_prefix`, or the one `base` gives):

- `<node>/sensor/<object id>/state`: a number as text (`21.5`); `nan`, a
  sensor with no value yet, is skipped;
- `<node>/binary_sensor/<object id>/state`, `<node>/switch/<object id>/state`:
  `ON` / `OFF`, stored as 1 / 0;
- `<node>/text_sensor/<object id>/state`: text, an attribute;
- `<node>/status`: `online` / `offline` (birth and Last Will, retained);
- `homeassistant/<component>/<node>/<object id>/config`: the Home Assistant
  discovery message ESPHome publishes for each entity (retained), whose
  `unit_of_measurement` (`unit_of_meas` abbreviated, the default) is the
  only place ESPHome states a sensor's unit: the hub reads it, keyed by the
  entity's state topic (`state_topic`, `stat_t`, with `~` expanded).

State messages are retained by default; those the broker hands over on
subscribing are last states of unknown age, not new readings.
"""

from __future__ import annotations

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
    scalar,
    text_of,
)

NUMERIC = frozenset({"sensor", "binary_sensor", "switch"})
COMPONENTS = (*sorted(NUMERIC), "text_sensor")
UNITS_MAX = 200_000  # entities whose unit is kept


class EspHome(Preset):
    """The `esphome` preset."""

    label = "esphome"
    default_base = "homeassistant"

    def __init__(self, settings: SourceSettings):
        super().__init__(settings)
        self.unit_of: dict[str, str] = {}  # state topic -> unit, from discovery

    def subscriptions(self) -> list[Subscription]:
        return [
            *(Subscription(f"+/{component}/+/state", telemetry=True) for component in COMPONENTS),
            Subscription("+/status", telemetry=False),
            Subscription(f"{self.base}/+/+/+/config", telemetry=False),
        ]

    def device_topics(self, device_id: str) -> tuple[list[str], list[str]]:
        return (
            [f"{device_id}/#", f"{self.base}/+/{device_id}/+/config"],
            [f"{device_id}/+/+/command"],
        )

    def decode(self, topic: str, payload: bytes, retained: bool) -> list[Decoded] | None:
        discovery = topic.startswith(self.root) and topic.endswith("/config")
        if discovery and topic.count("/") == self.root.count("/") + 3:
            self._discover(payload)
            return []
        parts = topic.split("/")
        if len(parts) == 2 and parts[1] == "status" and parts[0]:
            state = (text_of(payload) or "").strip()
            if state in ("online", "offline"):
                return [Availability(parts[0], state == "online")]
            return [] if not state else [Refused(parts[0], "status must be online or offline")]
        if len(parts) != 4 or parts[3] != "state" or parts[1] not in COMPONENTS:
            return None
        node, component, object_id = parts[0], parts[1], parts[2]
        text = text_of(payload)
        if text is None:
            return [Refused(node, f"{component}/{object_id}: not UTF-8 text")]
        if component == "text_sensor":
            return [Telemetry(node, {object_id: text})]
        value = scalar(text)
        if isinstance(value, str):
            if value.lower() == "nan":
                return []  # no value yet
            return [Refused(node, f"{component}/{object_id}: {text[:40]!r} is not a number")]
        unit = self.unit_of.get(topic)
        document: Any = {"value": value, "unit": unit} if unit else value
        return [Telemetry(node, {object_id: document}, self.units)]

    def _discover(self, payload: bytes) -> None:
        try:
            config = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if not isinstance(config, dict):
            return
        base = config.get("~")
        topic = config.get("state_topic", config.get("stat_t"))
        unit = config.get("unit_of_measurement", config.get("unit_of_meas"))
        if not isinstance(topic, str) or not isinstance(unit, str) or not unit:
            return
        if isinstance(base, str):
            topic = topic.replace("~", base)
        if len(self.unit_of) < UNITS_MAX or topic in self.unit_of:
            self.unit_of[topic] = unit
