"""What simulated firmware publishes: the topics and payloads of Tasmota,
Zigbee2MQTT, Homie v4 and ESPHome, in the shapes their documentation shows
(hub/sources/ reads them; its modules cite the docs).

A firmware here is one MQTT client: a Tasmota, Homie or ESPHome device, or a
Zigbee2MQTT bridge speaking for several Zigbee devices. It says what its Last
Will is, what it publishes on connecting (`hello`), on each report, and on a
clean stop (`goodbye`: the Will's own payload, since a clean DISCONNECT
discards the Will). Nothing here does I/O: a `Sample` in, `Message`s out;
devices/firmware_sim.py publishes them.
"""

from __future__ import annotations

from devices.errors import SetupError
from devices.firmware.base import Firmware, Message, Sample, slug
from devices.firmware.esphome import EspHome, esphome_name
from devices.firmware.homie import Homie
from devices.firmware.tasmota import Tasmota
from devices.firmware.zigbee2mqtt import Zigbee2Mqtt
from devices.link import check_device_id

__all__ = [
    "FIRMWARES",
    "EspHome",
    "Firmware",
    "Homie",
    "Message",
    "Sample",
    "Tasmota",
    "Zigbee2Mqtt",
    "fleet",
    "zigbee_name",
]

FIRMWARES = ("tasmota", "zigbee2mqtt", "homie", "esphome")


def fleet(firmware: str, count: int, prefix: str) -> list[Firmware]:
    """`count` devices of `firmware` named after `prefix`: one client each,
    or one Zigbee2MQTT bridge for all of them."""
    check_device_id(f"{prefix}-000")
    if firmware == "zigbee2mqtt":
        return [Zigbee2Mqtt([zigbee_name(prefix, i) for i in range(count)])]
    if firmware == "tasmota":
        return [Tasmota(f"{prefix}-tasmota-{i:03d}") for i in range(count)]
    if firmware == "homie":
        return [Homie(slug(f"{prefix}-homie-{i:03d}")) for i in range(count)]
    if firmware == "esphome":
        return [EspHome(esphome_name(f"{prefix}-esp-{i:03d}")) for i in range(count)]
    raise SetupError("firmware", firmware, "must be one of " + ", ".join(FIRMWARES))


def zigbee_name(prefix: str, index: int) -> str:
    """Every other friendly name has a space and a slash, as users name them."""
    return f"{prefix} room {index}/weather" if index % 2 == 0 else f"{prefix}-zigbee-{index:03d}"
