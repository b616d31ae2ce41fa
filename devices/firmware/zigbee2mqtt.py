"""Zigbee2MQTT (https://www.zigbee2mqtt.io/guide/usage/mqtt_topics_and_messages.html):
a bridge with Aqara WSDCGQ11LM weather sensors."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from devices.errors import SetupError
from devices.firmware.base import Message, Sample, fake_mac, to_json

# bridge/devices: a WSDCGQ11LM's exposes, as Zigbee2MQTT 2.x describes them.
EXPOSES: tuple[dict[str, Any], ...] = (
    {
        "access": 1, "category": "diagnostic", "description": "Remaining battery in %",
        "label": "Battery", "name": "battery", "property": "battery", "type": "numeric",
        "unit": "%", "value_max": 100, "value_min": 0,
    },
    {
        "access": 1, "description": "Measured temperature value", "label": "Temperature",
        "name": "temperature", "property": "temperature", "type": "numeric", "unit": "°C",
    },
    {
        "access": 1, "description": "Measured relative humidity", "label": "Humidity",
        "name": "humidity", "property": "humidity", "type": "numeric", "unit": "%",
    },
    {
        "access": 1, "description": "The measured atmospheric pressure", "label": "Pressure",
        "name": "pressure", "property": "pressure", "type": "numeric", "unit": "hPa",
    },
    {
        "access": 1, "category": "diagnostic",
        "description": "Voltage of the battery in millivolts", "label": "Voltage",
        "name": "voltage", "property": "voltage", "type": "numeric", "unit": "mV",
    },
    {
        "access": 1, "category": "diagnostic", "description": "Link quality (signal strength)",
        "label": "Linkquality", "name": "linkquality", "property": "linkquality",
        "type": "numeric", "unit": "lqi", "value_max": 255, "value_min": 0,
    },
)  # fmt: skip


class Zigbee2Mqtt:
    """A Zigbee2MQTT bridge (2.x, base topic `zigbee2mqtt`) with WSDCGQ11LM
    sensors: `bridge/state` (retained, `{"state":"offline"}` the Last Will),
    `bridge/devices` (retained, with the unit of each value), each device's
    `<friendly name>/availability` (retained) and its state as JSON."""

    base = "zigbee2mqtt"

    def __init__(self, names: Sequence[str]) -> None:
        for name in names:
            check_friendly_name(name)
        self.names = tuple(names)

    @property
    def client_id(self) -> str:
        return f"zigbee2mqtt_{fake_mac('/'.join(self.names))[:8]}"

    @property
    def devices(self) -> tuple[str, ...]:
        return self.names

    def will(self) -> Message:
        return Message(f"{self.base}/bridge/state", to_json({"state": "offline"}), retain=True)

    def hello(self) -> list[Message]:
        online = to_json({"state": "online"})
        return [
            Message(f"{self.base}/bridge/state", online, retain=True),
            Message(f"{self.base}/bridge/devices", to_json(self.bridge_devices()), retain=True),
            *(Message(f"{self.base}/{n}/availability", online, retain=True) for n in self.names),
        ]

    def report(self, device: str, sample: Sample) -> list[Message]:
        state = zigbee_state(sample)
        return [Message(f"{self.base}/{device}", to_json(state, sort=True), values=len(state))]

    def goodbye(self) -> list[Message]:
        return [self.will()]

    def bridge_devices(self) -> list[dict[str, Any]]:
        """`bridge/devices`: the coordinator, then each sensor."""
        coordinator = {
            "ieee_address": "0x00124b0000000000",
            "type": "Coordinator",
            "network_address": 0,
            "supported": True,
            "disabled": False,
            "friendly_name": "Coordinator",
            "definition": None,
            "interview_completed": True,
            "interviewing": False,
        }
        return [coordinator, *(self._device(i, name) for i, name in enumerate(self.names))]

    def _device(self, index: int, name: str) -> dict[str, Any]:
        return {
            "ieee_address": f"0x00158d{fake_mac(name)[:10]}",
            "type": "EndDevice",
            "network_address": 1000 + index,
            "supported": True,
            "disabled": False,
            "friendly_name": name,
            "definition": {
                "model": "WSDCGQ11LM",
                "vendor": "Aqara",
                "description": "Temperature, humidity and pressure sensor",
                "options": [],
                "exposes": EXPOSES,
            },
            "power_source": "Battery",
            "model_id": "lumi.weather",
            "interview_completed": True,
            "interviewing": False,
        }


def check_friendly_name(name: str) -> str:
    """`name` if Zigbee2MQTT accepts it as a friendly name."""
    problem = None
    if not name or name.startswith("/") or name.endswith("/"):
        problem = "must not be empty, nor start or end with /"
    elif re.search(r"/\d+$", name) or any(c in name for c in "+#"):
        problem = "must not end with / and a number, nor hold + or #"
    elif name == "bridge" or name.startswith("bridge/"):
        problem = "is the bridge's own topic"
    if problem:
        raise SetupError("friendly_name", name, problem)
    return name


def zigbee_state(sample: Sample) -> dict[str, float | int]:
    """`zigbee2mqtt/<friendly name>` of a WSDCGQ11LM (cached state: all values)."""
    return {
        "battery": sample.battery,
        "humidity": round(sample.humidity, 2),
        "linkquality": sample.linkquality,
        "pressure": round(sample.pressure, 1),
        "temperature": round(sample.temperature, 2),
        "voltage": sample.voltage,
    }
