"""What a source makes of one MQTT message, and the interface every source
(a firmware's preset, or a topic layout of one's own) implements.

A source is pure apart from what it learns from its own topics (units,
datatypes, which topics carry which sensor): bytes and a topic in, a list of
`Telemetry`, `Availability` and `Refused` out. The MQTT ingest turns those
into readings, presence and dead letters through the same pipeline as the
hub's native topics, so enrollment, rate limits and rejections apply alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from hub.config import SourceSettings

NO_UNITS: Mapping[str, str] = MappingProxyType({})


class Telemetry(NamedTuple):
    """Values of one device: `document` is a device payload, parsed (or the
    raw bytes, for the normalizer to parse and, if need be, refuse)."""

    name: str  # the device's name as its firmware gives it
    document: Any
    units: Mapping[str, str] = NO_UNITS  # the unit of a value sent without one
    senml: bool = False  # a SenML pack, read as nothing else


class Availability(NamedTuple):
    """The firmware says whether the device is connected (its Last Will)."""

    name: str
    online: bool


class Refused(NamedTuple):
    """A message on a device's topic that cannot be a reading, and why."""

    name: str
    detail: str


Decoded = Telemetry | Availability | Refused


class Subscription(NamedTuple):
    """A topic filter; `telemetry` ones are split between the hubs of a
    cluster (`mqtt.shared_group`), the others (availability, units and other
    descriptions) reach every hub."""

    filter: str
    telemetry: bool


class Source(Protocol):
    """A preset or a layout: the topics it reads, and what a message on them means."""

    @property
    def label(self) -> str:
        """What the source is called in attributes, logs and rejections."""

    @property
    def group(self) -> str:
        """The dashboard group of its devices ("" for none)."""

    def subscriptions(self) -> list[Subscription]:
        """The topic filters to subscribe to."""

    def decode(self, topic: str, payload: bytes, retained: bool) -> list[Decoded] | None:
        """What the message means; None when the topic is not this source's,
        an empty list when it is but carries nothing to store."""

    def device_topics(self, device_id: str) -> tuple[list[str], list[str]]:
        """(topics it publishes, topics it reads) of one device that connects
        to the broker itself, for the broker's ACL; none for a bridge's."""


class Preset:
    """What each firmware preset keeps of its `[[mqtt.sources]]` entry: its
    devices' group, the units that override the firmware's, and the base
    topic the firmware was set up with."""

    label = ""  # the preset's name
    default_base = ""  # the firmware's own default base topic

    def __init__(self, settings: SourceSettings):
        self.group = settings.group
        self.units = settings.units
        self.base = settings.base or self.default_base
        self.root = self.base + "/"  # what every topic under the base starts with

    def device_topics(self, device_id: str) -> tuple[list[str], list[str]]:
        """None, unless the preset says otherwise: a bridge's devices do not
        connect to the broker themselves (`Source.device_topics`)."""
        return [], []


def text_of(payload: bytes) -> str | None:
    """A payload as text, or None when it is not UTF-8."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return None


def scalar(text: str) -> Any:
    """A value sent as text (`21.5`, `true`, `ON`): a number, a boolean, or
    the text itself (an attribute)."""
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in ("true", "on"):
        return True
    if lowered in ("false", "off"):
        return False
    try:
        number = float(stripped)
    except ValueError:
        return stripped
    if number != number or number in (float("inf"), float("-inf")):
        return stripped  # "nan", "inf": text, not a reading
    return int(number) if number.is_integer() and "." not in stripped else number
