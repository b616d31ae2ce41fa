"""ESPHome's MQTT component (https://esphome.io/components/mqtt.html): a
node with temperature, humidity and motion sensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from devices.errors import SetupError
from devices.firmware.base import Message, Sample, fake_mac, slug, to_json

NAME_MAX = 31  # with name_add_mac_suffix off


def esphome_name(text: str) -> str:
    """`text` as an ESPHome node name (lowercase, digits, hyphens, 31 at most)."""
    name = slug(text)
    if len(name) > NAME_MAX:
        raise SetupError("name", name, f"an ESPHome node name has {NAME_MAX} at most")
    return name


@dataclass(frozen=True, slots=True)
class EspEntity:
    """One ESPHome entity: its component, object id, and what discovery says."""

    component: str
    object_id: str
    name: str
    device_class: str
    unit: str | None = None


ENTITIES = (
    EspEntity("sensor", "temperature", "Temperature", "temperature", "°C"),
    EspEntity("sensor", "humidity", "Humidity", "humidity", "%"),
    EspEntity("binary_sensor", "motion", "Motion", "motion"),
)


class EspHome:
    """An ESPHome node with a temperature, a humidity and a motion sensor, MQTT
    defaults: `<node>/status` `online` / `offline` (retained, `offline` the
    Last Will), Home Assistant discovery with abbreviated keys (retained),
    states retained as text; the motion sensor publishes when it changes."""

    version = "2024.11.0"

    def __init__(self, node: str) -> None:
        if esphome_name(node) != node:
            raise SetupError("node", node, "an ESPHome name is lowercase, digits and hyphens")
        self.node = node
        self.mac = fake_mac(node)
        self._motion: bool | None = None

    @property
    def client_id(self) -> str:
        return f"{self.node}-{self.mac}"

    @property
    def devices(self) -> tuple[str, ...]:
        return (self.node,)

    def will(self) -> Message:
        return Message(f"{self.node}/status", b"offline", retain=True)

    def hello(self) -> list[Message]:
        self._motion = None  # the state is sent again after a reconnect
        return [
            Message(f"{self.node}/status", b"online", retain=True),
            *(
                Message(
                    esphome_discovery_topic(self.node, e), to_json(self.discovery(e)), retain=True
                )
                for e in ENTITIES
            ),
        ]

    def report(self, device: str, sample: Sample) -> list[Message]:
        messages = [
            self._state("sensor", "temperature", f"{sample.temperature:.1f}", values=1),
            self._state("sensor", "humidity", f"{sample.humidity:.1f}", values=1),
        ]
        if sample.motion != self._motion:
            self._motion = sample.motion
            messages.append(
                self._state("binary_sensor", "motion", "ON" if sample.motion else "OFF", values=1)
            )
        return messages

    def goodbye(self) -> list[Message]:
        return [self.will()]

    def discovery(self, entity: EspEntity) -> dict[str, Any]:
        """The entity's Home Assistant discovery message, abbreviated keys."""
        config: dict[str, Any] = {"dev_cla": entity.device_class}
        if entity.unit:
            config["unit_of_meas"] = entity.unit
            config["stat_cla"] = "measurement"
        config |= {
            "name": entity.name,
            "stat_t": f"{self.node}/{entity.component}/{entity.object_id}/state",
            "avty_t": f"{self.node}/status",
            # The default (legacy) generator: ESP<component type><object id>.
            "uniq_id": f"ESP{entity.component}{entity.object_id}",
            "dev": {
                "ids": self.mac,
                "name": self.node,
                "sw": f"esphome v{self.version}",
                "mdl": "esp32dev",
                "mf": "espressif",
            },
        }
        return config

    def _state(self, component: str, object_id: str, text: str, *, values: int) -> Message:
        topic = f"{self.node}/{component}/{object_id}/state"
        return Message(topic, text.encode(), retain=True, values=values)


def esphome_discovery_topic(node: str, entity: EspEntity) -> str:
    return f"homeassistant/{entity.component}/{node}/{entity.object_id}/config"
