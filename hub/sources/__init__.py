"""Devices that were not written for this hub: `[[mqtt.sources]]`.

Each source reads some MQTT topics and says what a message on them means
(`hub.sources.base`): the four firmware presets (`tasmota`, `zigbee2mqtt`,
`homie`, `esphome`) and topic layouts of one's own (`layout`). Foreign device
names become hub device ids in `names`.
"""

from __future__ import annotations

from hub.config import SourceSettings
from hub.sources.base import Source
from hub.sources.esphome import EspHome
from hub.sources.homie import Homie
from hub.sources.layout import Layout
from hub.sources.tasmota import Tasmota
from hub.sources.zigbee2mqtt import Zigbee2Mqtt

PRESETS: dict[str, type[Tasmota | Zigbee2Mqtt | Homie | EspHome]] = {
    "tasmota": Tasmota,
    "zigbee2mqtt": Zigbee2Mqtt,
    "homie": Homie,
    "esphome": EspHome,
}


def build_sources(settings: tuple[SourceSettings, ...]) -> list[Source]:
    """One source for each `[[mqtt.sources]]`, in their order."""
    return [PRESETS[s.preset](s) if s.preset else Layout(s) for s in settings]
