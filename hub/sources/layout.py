"""A topic layout of one's own (`[[mqtt.sources]] topic = ...`).

`topic` is an MQTT topic whose levels are names, `{device}` (required),
`{metric}` (optional), `+` (any one level) or a final `#` (any levels).
`format` says what a payload is:

- `json`: a device payload (any of the contract's forms); with `{metric}`
  in the topic, the payload is that one metric's value (`21.5`, or a value
  object `{"value": 70, "unit": "degF"}`, or a group);
- `senml`: a SenML pack (RFC 8428), read as nothing else;
- `number`: the value of `{metric}` as text (`21.5`, also `true`/`ON`).

`units` gives the unit of values sent without one, by metric name.
"""

from __future__ import annotations

from typing import Any

import orjson

from hub.config import SourceSettings
from hub.sources.base import Decoded, Refused, Subscription, Telemetry, scalar, text_of

DEVICE, METRIC = "{device}", "{metric}"


class Layout:
    """A `[[mqtt.sources]]` with a `topic` pattern."""

    def __init__(self, settings: SourceSettings):
        self.pattern = settings.topic
        self.levels = settings.topic.split("/")
        self.device_at = self.levels.index(DEVICE)
        self.metric_at = self.levels.index(METRIC) if METRIC in self.levels else None
        self.format = settings.format
        self.units = settings.units
        self._group = settings.group
        self.open_end = self.levels[-1] == "#"

    @property
    def label(self) -> str:
        return self.pattern

    @property
    def group(self) -> str:
        return self._group

    def subscriptions(self) -> list[Subscription]:
        topic = "/".join("+" if level in (DEVICE, METRIC) else level for level in self.levels)
        return [Subscription(topic, telemetry=True)]

    def device_topics(self, device_id: str) -> tuple[list[str], list[str]]:
        mine = [device_id if v == DEVICE else "+" if v == METRIC else v for v in self.levels]
        return ["/".join(mine)], []

    def matches(self, parts: list[str]) -> bool:
        fixed = self.levels[:-1] if self.open_end else self.levels
        if len(parts) < len(fixed) or (not self.open_end and len(parts) != len(fixed)):
            return False
        return all(
            level in ("+", DEVICE, METRIC) or level == part
            for level, part in zip(fixed, parts, strict=False)
        ) and all(parts[i] for i in (self.device_at, self.metric_at) if i is not None)

    def decode(self, topic: str, payload: bytes, retained: bool) -> list[Decoded] | None:
        parts = topic.split("/")
        if not self.matches(parts):
            return None
        name = parts[self.device_at]
        metric = parts[self.metric_at] if self.metric_at is not None else None
        if self.format == "senml":
            return [Telemetry(name, payload, self.units, senml=True)]
        if metric is None:
            return [Telemetry(name, payload, self.units)]
        if self.format == "number":
            text = text_of(payload)
            value = scalar(text) if text is not None else None
            if isinstance(value, str) or value is None:
                shown = payload[:40].decode("utf-8", errors="replace")
                return [Refused(name, f"{metric}: {shown!r} is not a number")]
            return [Telemetry(name, {metric: value}, self.units)]
        try:
            document: Any = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return [Telemetry(name, payload, self.units)]  # the normalizer says why
        return [Telemetry(name, {metric: document}, self.units)]
