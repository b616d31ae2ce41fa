"""Homie 4.0.0 (https://homieiot.github.io/specification/spec-core-v4_0_0/):
a device with one node, `climate`."""

from __future__ import annotations

import re

from devices.errors import SetupError
from devices.firmware.base import Message, Sample

_HOMIE_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


class Homie:
    """A Homie 4.0.0 device with one node, `climate` (temperature, humidity):
    everything retained, `$state` `init` then `ready` on connecting, `lost` the
    Last Will, `disconnected` on a clean stop; values as text."""

    root = "homie"
    node = "climate"
    properties = (("temperature", "Temperature", "°C"), ("humidity", "Humidity", "%"))

    def __init__(self, device_id: str) -> None:
        if not _HOMIE_ID.fullmatch(device_id):
            raise SetupError("device_id", device_id, "a Homie id is a-z, 0-9 and inner hyphens")
        self.device_id = device_id

    @property
    def client_id(self) -> str:
        return self.device_id

    @property
    def devices(self) -> tuple[str, ...]:
        return (self.device_id,)

    def will(self) -> Message:
        return self._attribute("$state", "lost")

    def hello(self) -> list[Message]:
        node = self.node
        messages = [
            self._attribute("$homie", "4.0.0"),
            self._attribute("$name", f"Simulated {self.device_id}"),
            self._attribute("$state", "init"),
            self._attribute("$nodes", node),
            self._attribute(f"{node}/$name", "Climate"),
            self._attribute(f"{node}/$type", "BME280"),
            self._attribute(f"{node}/$properties", ",".join(p for p, _, _ in self.properties)),
        ]
        for prop, name, unit in self.properties:
            messages += [
                self._attribute(f"{node}/{prop}/$name", name),
                self._attribute(f"{node}/{prop}/$datatype", "float"),
                self._attribute(f"{node}/{prop}/$unit", unit),
            ]
        return [*messages, self._attribute("$state", "ready")]

    def report(self, device: str, sample: Sample) -> list[Message]:
        topic = f"{self.root}/{self.device_id}/{self.node}"
        return [
            Message(f"{topic}/temperature", homie_float(sample.temperature), retain=True, values=1),
            Message(f"{topic}/humidity", homie_float(sample.humidity), retain=True, values=1),
        ]

    def goodbye(self) -> list[Message]:
        return [self._attribute("$state", "disconnected")]

    def _attribute(self, name: str, value: str) -> Message:
        return Message(f"{self.root}/{self.device_id}/{name}", value.encode(), retain=True)


def homie_float(value: float) -> bytes:
    """A Homie float: digits and a dot, never an exponent."""
    return f"{value:.1f}".encode()
