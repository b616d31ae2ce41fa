"""Device payload -> readings, attributes and rejections. Pure: no I/O, no clock.

The four payload forms of the contract are accepted: a flat object, an
envelope (`ts`, `seq`, `values`), a batch (array of envelopes) and a SenML
pack. Structural faults reject the whole payload (or the one envelope of a
batch); a bad value rejects only that value, so the good ones are kept.
Every rejection carries a reason from `RejectReason` and a readable detail.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import orjson

from hub import senml, units
from hub.config import NormalizeSettings
from hub.models import (
    Attribute,
    Normalized,
    PendingReading,
    Rejection,
    RejectReason,
    Source,
    is_valid_device_id,
)

EXCERPT_BYTES = 256
MAX_ATTRIBUTE_LENGTH = 1024
MAX_NAME_LENGTH = 64
_SECONDS_BELOW = 100_000_000_000  # numbers below this are epoch seconds (until year 5138)
_ENVELOPE_KEYS = frozenset({"ts", "seq"})
_VALUE_OBJECT_KEYS = frozenset({"value", "unit", "ts"})


@dataclass(frozen=True, slots=True)
class Rules:
    """The normalizer's settings, in the units it works in (ms, bytes)."""

    max_payload_bytes: int = 65536
    max_depth: int = 8
    max_values: int = 1000
    max_future_ms: int = 300_000
    max_past_ms: int = 30 * 86_400_000
    aliases: Mapping[str, str] = field(default_factory=dict)
    units: Mapping[str, str] = field(default_factory=lambda: dict(NormalizeSettings().units))
    # key as sent -> (metric, unit label), for keys seen in flat objects
    plain_names: dict[str, tuple[str, str | None]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def from_settings(cls, settings: NormalizeSettings) -> Rules:
        return cls(
            max_payload_bytes=settings.max_payload_bytes,
            max_depth=settings.max_depth,
            max_values=settings.max_values,
            max_future_ms=round(settings.max_future * 1000),
            max_past_ms=round(settings.max_past * 1000),
            aliases={snake_case(k): snake_case(v) for k, v in settings.aliases.items()},
            units={snake_case(k): v for k, v in settings.units.items()},
        )


class _Reject(Exception):
    """Internal: unwinds one envelope or value with its reason."""

    def __init__(self, reason: RejectReason, detail: str):
        self.reason = reason
        self.detail = detail


NO_UNITS: Mapping[str, str] = MappingProxyType({})


def normalize(
    raw: bytes,
    *,
    device_id: str,
    source: Source,
    received_ms: int,
    rules: Rules,
    units: Mapping[str, str] = NO_UNITS,
    pack: bool = False,
) -> Normalized:
    """Normalize one device message that arrived as bytes (MQTT, HTTP). It is
    parsed once; a plain flat object then takes a shortcut. `units`: the unit
    of a value sent without one, by metric (or by the last part of a group's
    member's name), where its source says what it is. `pack`: the message
    must be a SenML pack (a source of `format = "senml"`)."""
    if len(raw) <= rules.max_payload_bytes and is_valid_device_id(device_id):
        try:
            document = orjson.loads(raw)  # also refuses bytes that are not UTF-8
        except orjson.JSONDecodeError:
            pass
        else:
            plain = not units and not pack
            flat = _plain_flat_object(document, device_id, received_ms, rules) if plain else None
            if flat is not None:
                return flat
            return _normalize(
                lambda: document, raw, device_id, source, received_ms, rules, units, pack
            )
    # Refused before or while parsing: the general path says why.
    return _normalize(lambda: _parse(raw), raw, device_id, source, received_ms, rules, units, pack)


def _parse(raw: bytes) -> Any:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Reject(RejectReason.INVALID_ENCODING, f"not UTF-8: {exc.reason}") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _Reject(RejectReason.INVALID_JSON, str(exc)) from None


# How many distinct keys `_plain_flat_object` remembers: the names of a fleet's
# metrics, not whatever a misbehaving device makes up.
PLAIN_NAMES_MAX = 10_000


def _plain_flat_object(
    document: Any, device_id: str, received_ms: int, rules: Rules
) -> Normalized | None:
    """The payload most devices send, a flat object of numbers without a
    unit, `ts` or `seq`, in one pass: 5.4 µs for three metrics here, against
    11 µs by the general path. None for anything else, or any doubt; the
    general path then decides, and explains what it refuses. Tests check that
    both give the same for any flat object."""
    if type(document) is not dict or not document or len(document) > rules.max_values:
        return None
    names = rules.plain_names
    readings = []
    for key, value in document.items():
        kind = type(value)  # exactly: a bool is an int to isinstance
        if kind is int:
            try:
                value = float(value)
            except OverflowError:
                return None
        elif kind is not float:
            return None
        if not math.isfinite(value):
            return None
        name = names.get(key)
        if name is None:
            name = _plain_name(key, rules)
            if name is None:
                return None
        readings.append(PendingReading(device_id, name[0], received_ms, value, name[1]))
    return Normalized(tuple(readings))


def _plain_name(key: str, rules: Rules) -> tuple[str, str | None] | None:
    """(metric, unit label) for a key of a flat object, remembered; None for
    keys the general path treats otherwise (envelope keys, bad names)."""
    if key in _ENVELOPE_KEYS or key == "values":
        return None
    try:
        metric = metric_name(key, rules)
    except _Reject:
        return None
    name = (metric, unit_label(metric, rules))
    if len(rules.plain_names) < PLAIN_NAMES_MAX:
        rules.plain_names[key] = name
    return name


def metric_name(name: Any, rules: Rules) -> str:
    """A key as sent -> the stored metric name (snake_case, then aliases)."""
    if not isinstance(name, str) or not name:
        raise _Reject(
            RejectReason.INVALID_METRIC, f"metric name {_show(name, 80)!r} is not a string"
        )
    metric = snake_case(name[: MAX_NAME_LENGTH * 2])
    metric = rules.aliases.get(metric, metric)
    if not metric or len(metric) > MAX_NAME_LENGTH:
        raise _Reject(
            RejectReason.INVALID_METRIC,
            f"metric name {name[:80]!r} must have 1-{MAX_NAME_LENGTH} letters or digits",
        )
    return metric


def unit_label(metric: str, rules: Rules) -> str | None:
    """The unit of a value sent without one: the configured unit, named as a
    converted value's would be ("degC" configured -> "Cel")."""
    configured = rules.units.get(metric)
    known = units.lookup(configured) if configured is not None else None
    return known.symbol if known is not None else configured


def normalize_document(
    document: Any,
    *,
    raw: bytes,
    device_id: str,
    source: Source,
    received_ms: int,
    rules: Rules,
    units: Mapping[str, str] = NO_UNITS,
    pack: bool = False,
) -> Normalized:
    """Normalize a message a transport already parsed (Socket.IO, a firmware's
    topics); `raw` is its JSON encoding, used for the size limit and for
    excerpts. `units` and `pack` as for `normalize`."""
    if isinstance(document, bytes | str):
        data = document.encode() if isinstance(document, str) else document
        return normalize(
            data,
            device_id=device_id,
            source=source,
            received_ms=received_ms,
            rules=rules,
            units=units,
            pack=pack,
        )
    return _normalize(lambda: document, raw, device_id, source, received_ms, rules, units, pack)


def _normalize(
    parse: Callable[[], Any],
    raw: bytes,
    device_id: str,
    source: Source,
    received_ms: int,
    rules: Rules,
    units: Mapping[str, str] = NO_UNITS,
    pack: bool = False,
) -> Normalized:
    run = _Run(raw, device_id, source, received_ms, rules, units)
    try:
        if not is_valid_device_id(device_id):
            raise _Reject(
                RejectReason.INVALID_DEVICE_ID, "device id must be 1-64 of A-Z a-z 0-9 _ . -"
            )
        if len(raw) > rules.max_payload_bytes:
            raise _Reject(
                RejectReason.PAYLOAD_TOO_LARGE,
                f"{len(raw)} bytes exceeds the limit of {rules.max_payload_bytes}",
            )
        run.document(parse(), pack)
    except _Reject as reject:
        run.reject(reject)
    return run.result()


def rejected(
    raw: bytes,
    *,
    device_id: str,
    source: Source,
    received_ms: int,
    reason: RejectReason,
    detail: str,
) -> Normalized:
    """A message refused before normalizing (unknown device, rate limited)."""
    excerpt = raw[:EXCERPT_BYTES].decode("utf-8", errors="replace")
    rejection = Rejection(source, device_id[:MAX_NAME_LENGTH], reason, detail, received_ms, excerpt)
    return Normalized(rejections=(rejection,))


def rate_limited(
    raw: bytes, *, device_id: str, source: Source, received_ms: int, wait: float
) -> Normalized:
    """A message refused by its device's rate limit, `wait` seconds before
    the device has room again; the same dead letter on every path."""
    detail = f"more than the device's message rate; room again in {wait:.2f} s"
    return rejected(
        raw,
        device_id=device_id,
        source=source,
        received_ms=received_ms,
        reason=RejectReason.RATE_LIMITED,
        detail=detail,
    )


@lru_cache(maxsize=8192)
def snake_case(name: str) -> str:
    """`batteryLevel` -> `battery_level`, `Air Temp` -> `air_temp`, `CO2-ppm` -> `co2_ppm`,
    `co2Level` -> `co2_level`; a model name stays whole: `DS18B20` -> `ds18b20`."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1_\2", name)
    spaced = re.sub(r"([0-9])([A-Z][a-z])", r"\1_\2", spaced)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", spaced)
    return re.sub(r"[^A-Za-z0-9]+", "_", spaced).strip("_").lower()


def parse_timestamp(value: Any) -> int:
    """Epoch seconds, epoch milliseconds or ISO 8601 -> epoch milliseconds (UTC).

    Numbers below 1e11 are seconds (1e11 s is the year 5138; 1e11 ms is 1973).
    An ISO 8601 time without an offset is taken as UTC.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{value!r} is not a time")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite time")
        return round(value * 1000) if abs(value) < _SECONDS_BELOW else round(value)
    if isinstance(value, str):
        text = value.strip()
        if text.replace(".", "", 1).isdigit():
            return parse_timestamp(float(text))
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return round(moment.timestamp() * 1000)
    raise ValueError(f"{type(value).__name__} is not a time")


def _depth_exceeds(document: Any, limit: int) -> bool:
    if isinstance(document, dict) and not any(
        isinstance(value, dict | list) for value in document.values()
    ):
        return limit < 1  # a flat object, the common case
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend(
                (child, depth + 1) for child in node.values() if isinstance(child, dict | list)
            )
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node if isinstance(child, dict | list))
    return False


def _count_values(document: Any) -> int:
    """The values a payload holds, as it will be read: a SenML record is one,
    a value object is one, each member of a group is one."""
    if isinstance(document, list):
        # A SenML record holds one value in several fields (n, v, u, t ...).
        if senml.is_pack(document):
            return len(document)
        return sum(_count_values(item) for item in document)
    if isinstance(document, dict):
        if _is_value_object(document):
            return 1
        values = document.get("values")
        if isinstance(values, dict):
            return _count_values(values)
        return sum(_count_values(v) for k, v in document.items() if k not in _ENVELOPE_KEYS)
    return 1


class _Run:
    """The state of normalizing one message."""

    def __init__(
        self,
        raw: bytes,
        device_id: str,
        source: Source,
        received_ms: int,
        rules: Rules,
        assumed: Mapping[str, str],
    ):
        self.raw = raw
        self.assumed = assumed
        self.device_id = device_id
        self.source = source
        self.received_ms = received_ms
        self.rules = rules
        self.readings: list[PendingReading] = []
        self.attributes: list[Attribute] = []
        self.rejections: list[Rejection] = []

    def result(self) -> Normalized:
        if not (self.readings or self.attributes or self.rejections):
            self.reject(_Reject(RejectReason.EMPTY, "the payload holds no values"))
        return Normalized(tuple(self.readings), tuple(self.attributes), tuple(self.rejections))

    def reject(self, reject: _Reject) -> None:
        excerpt = self.raw[:EXCERPT_BYTES].decode("utf-8", errors="replace")
        self.rejections.append(
            Rejection(
                self.source,
                self.device_id[:MAX_NAME_LENGTH],
                reject.reason,
                reject.detail,
                self.received_ms,
                excerpt,
            )
        )

    # -- forms --------------------------------------------------------------

    def document(self, document: Any, pack: bool = False) -> None:
        if _depth_exceeds(document, self.rules.max_depth):
            raise _Reject(
                RejectReason.TOO_DEEP, f"nested deeper than {self.rules.max_depth} levels"
            )
        count = _count_values(document)
        if count > self.rules.max_values:
            raise _Reject(
                RejectReason.TOO_MANY_VALUES,
                f"{count} values exceed the limit of {self.rules.max_values}",
            )
        if pack and not (isinstance(document, list) and document):
            raise _Reject(RejectReason.INVALID_SENML, "a SenML pack is a JSON array of records")
        if pack:
            self.senml(document)
        elif isinstance(document, dict):
            self.envelope(document)
        elif isinstance(document, list):
            if not document:
                raise _Reject(RejectReason.EMPTY, "an empty array")
            if senml.is_pack(document):
                self.senml(document)
            else:
                for index, item in enumerate(document):
                    try:
                        if not isinstance(item, dict):
                            raise _Reject(RejectReason.UNSUPPORTED_FORM, "not an object")
                        self.envelope(item)
                    except _Reject as reject:
                        reject.detail = f"batch item {index}: {reject.detail}"
                        self.reject(reject)
        else:
            raise _Reject(
                RejectReason.UNSUPPORTED_FORM,
                f"a JSON {type(document).__name__} is not a device payload",
            )

    def envelope(self, obj: dict[str, Any]) -> None:
        """An envelope `{"ts", "seq", "values"}` or a flat object (whose `ts`
        and `seq` keys, when present, mean the same as in an envelope)."""
        values = obj.get("values")
        if isinstance(values, dict):
            extra = set(obj) - _ENVELOPE_KEYS - {"values"}
            if extra:
                raise _Reject(
                    RejectReason.UNSUPPORTED_FORM,
                    f"unexpected envelope keys {sorted(extra)}; put values under 'values'",
                )
        else:
            values = {k: v for k, v in obj.items() if k not in _ENVELOPE_KEYS}
        ts = self.timestamp(obj["ts"]) if "ts" in obj else self.received_ms
        device_seq = self.device_seq(obj["seq"]) if "seq" in obj else None
        if not values:
            raise _Reject(RejectReason.EMPTY, "no values")
        for name, value in values.items():
            try:
                self.value(name, value, ts, device_seq)
            except _Reject as reject:
                self.reject(reject)

    def senml(self, records: list[Any]) -> None:
        """A SenML pack (`hub.senml`): each resolved record is one value of
        the sender; a bad record is rejected alone, a pack the hub must not
        use (4.4) as a whole."""
        try:
            senml.check_pack(records)
        except senml.PackError as error:
            raise _Reject(error.reason, error.detail) from None
        resolver = senml.Resolver(self.device_id, self.received_ms / 1000)
        named: dict[str, int] = {}
        for index, record in enumerate(records):
            try:
                resolved = resolver.record(index, record)
                if resolved is None:
                    continue
                ts = self.timestamp(resolved.time)
                if resolved.value is not None:
                    self.senml_value(resolved.metric, resolved.value, resolved.unit, ts)
                if resolved.sum is not None:
                    unit = senml.sum_unit(resolved.unit)
                    self.senml_value(f"{resolved.metric}_sum", resolved.sum, unit, ts)
                if resolved.device.startswith("urn:"):
                    named.setdefault(resolved.device, ts)
            except senml.RecordError as error:
                self.reject(_Reject(error.reason, error.detail))
            except _Reject as reject:
                reject.detail = f"record {index}: {reject.detail}"
                self.reject(reject)
        for name, ts in named.items():
            self.attributes.append(Attribute(self.device_id, "senml_name", name, ts))

    def senml_value(self, metric: str, value: Any, unit: str | None, ts: int) -> None:
        if unit and not isinstance(value, str):
            value = {"value": value, "unit": unit}
        self.value(metric, value, ts, None)

    # -- fields -------------------------------------------------------------

    def value(
        self, name: Any, value: Any, ts: int, device_seq: int | None, group: str = ""
    ) -> None:
        """One named value of a payload; an object that is not a value object
        (or an array) is a group, its members named `{group}_{name}`."""
        part = _name_part(name)
        if isinstance(value, dict) and not _is_value_object(value):
            self.group(_joined(group, part), value.items(), ts, device_seq)
            return
        if isinstance(value, list) and value:
            # Channels, as Tasmota sends them ("Power": [12, 0]): 1, 2, ...
            members = ((str(index), item) for index, item in enumerate(value, 1))
            self.group(_joined(group, part), members, ts, device_seq)
            return
        metric = self.joined_metric(group, part)
        unit: str | None = None
        if isinstance(value, dict):
            if "ts" in value:
                ts = self.timestamp(value["ts"])
            given_unit = value.get("unit")
            if given_unit is not None and not isinstance(given_unit, str):
                raise _Reject(
                    RejectReason.UNKNOWN_UNIT, f"metric {metric!r}: unit must be a string"
                )
            unit, value = given_unit or None, value["value"]
        if isinstance(value, str):
            if len(value) > MAX_ATTRIBUTE_LENGTH:
                raise _Reject(
                    RejectReason.INVALID_VALUE,
                    f"attribute {metric!r}: longer than {MAX_ATTRIBUTE_LENGTH} characters",
                )
            self.attributes.append(Attribute(self.device_id, metric, value, ts))
            return
        if isinstance(value, bool):
            number = 1.0 if value else 0.0
        elif isinstance(value, int | float):
            try:
                number = float(value)
            except OverflowError:  # an int from a document parsed in Python can be huge
                number = math.inf
            if not math.isfinite(number):
                raise _Reject(
                    RejectReason.NON_FINITE, f"metric {metric!r}: {_show(value, 32)} is not finite"
                )
        else:
            kind = "null" if value is None else type(value).__name__
            if value == []:
                kind = "empty list"
            raise _Reject(
                RejectReason.INVALID_VALUE,
                f"metric {metric!r}: a {kind} is not a number, boolean or string",
            )
        number, canonical = self.convert(metric, number, unit, part)
        self.readings.append(
            PendingReading(self.device_id, metric, ts, number, canonical, device_seq)
        )

    def group(
        self, group: str, members: Iterable[tuple[Any, Any]], ts: int, device_seq: int | None
    ) -> None:
        """The members of a group, each rejected alone when it is bad."""
        for name, value in members:
            try:
                self.value(name, value, ts, device_seq, group)
            except _Reject as reject:
                self.reject(reject)

    def joined_metric(self, group: str, part: str) -> str:
        """A group's member as a metric: the normalized names joined with `_`,
        then the aliases, as for any metric."""
        joined = _joined(group, part)
        metric = self.rules.aliases.get(joined, joined)
        if len(metric) > MAX_NAME_LENGTH:
            raise _Reject(
                RejectReason.INVALID_METRIC,
                f"metric name {metric[:80]!r} must have 1-{MAX_NAME_LENGTH} letters or digits",
            )
        return metric

    def convert(
        self, metric: str, value: float, unit: str | None, leaf: str
    ) -> tuple[float, str | None]:
        """`value` in `unit` -> the metric's canonical unit. A value without a
        unit is in the unit its source says (`assumed`), else in the
        canonical one. A metric in a group (`am2301_temperature`) with no unit
        configured of its own takes its last name's (`temperature`)."""
        if unit is None:
            unit = self.assumed.get(metric) or self.assumed.get(leaf)
            if unit is None:
                return value, unit_label(metric, self.rules) or unit_label(leaf, self.rules)
        configured = self.rules.units.get(metric) or self.rules.units.get(leaf)
        source = units.lookup(unit)
        if source is None:
            if configured is not None and unit != configured:
                raise _Reject(
                    RejectReason.UNKNOWN_UNIT,
                    f"metric {metric!r}: unknown unit {unit[:32]!r} (expected {configured})",
                )
            if len(unit) > units.MAX_UNIT_LENGTH or not unit.isprintable():
                raise _Reject(RejectReason.UNKNOWN_UNIT, f"metric {metric!r}: unit {unit[:32]!r}")
            return value, unit
        target_symbol = configured or units.DIMENSION_DEFAULTS.get(source.dimension, source.symbol)
        target = units.lookup(target_symbol)
        if target is None:
            # A configured unit the table does not know can only be matched exactly.
            raise _Reject(
                RejectReason.INCOMPATIBLE_UNIT,
                f"metric {metric!r}: cannot convert {unit!r} to {target_symbol!r}",
            )
        if source.symbol == "%" and target.symbol == "%RH":
            # Relative humidity is a percentage; devices commonly send it as plain "%".
            return value, target.symbol
        if target.dimension != source.dimension:
            raise _Reject(
                RejectReason.INCOMPATIBLE_UNIT,
                f"metric {metric!r}: {unit!r} is a {source.dimension} unit, "
                f"not {target.dimension} ({target.symbol})",
            )
        converted = units.convert(value, source, target)
        if not math.isfinite(converted):
            raise _Reject(
                RejectReason.NON_FINITE,
                f"metric {metric!r}: {value!r} {unit[:32]} overflows in {target.symbol}",
            )
        return converted, target.symbol

    def timestamp(self, value: Any) -> int:
        try:
            ts = parse_timestamp(value)
        except (ValueError, OverflowError) as exc:
            raise _Reject(
                RejectReason.INVALID_TIMESTAMP, f"ts {_show(value, 64)!r}: {exc}"
            ) from None
        if ts > self.received_ms + self.rules.max_future_ms:
            raise _Reject(
                RejectReason.TIMESTAMP_IN_FUTURE,
                f"ts {ts} is {(ts - self.received_ms) / 1000:.0f} s ahead of the hub's clock",
            )
        if ts < self.received_ms - self.rules.max_past_ms:
            raise _Reject(
                RejectReason.TIMESTAMP_TOO_OLD,
                f"ts {ts} is {(self.received_ms - ts) / 86_400_000:.1f} days old",
            )
        return ts

    def device_seq(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
            raise _Reject(
                RejectReason.INVALID_SEQ, f"seq {_show(value, 32)!r} is not an integer >= 0"
            )
        return value


def _name_part(name: Any) -> str:
    """One key of a payload, normalized: a metric, or one part of a group's."""
    if not isinstance(name, str) or not name:
        raise _Reject(
            RejectReason.INVALID_METRIC, f"metric name {_show(name, 80)!r} is not a string"
        )
    part = snake_case(name[: MAX_NAME_LENGTH * 2])
    if not part:
        raise _Reject(
            RejectReason.INVALID_METRIC,
            f"metric name {name[:80]!r} must have 1-{MAX_NAME_LENGTH} letters or digits",
        )
    return part


def _joined(group: str, part: str) -> str:
    return f"{group}_{part}" if group else part


def _is_value_object(obj: dict[str, Any]) -> bool:
    """`{"value": 21.5, "unit": "Cel"}` (and `ts`): one value, not a group."""
    return "value" in obj and obj.keys() <= _VALUE_OBJECT_KEYS


def _show(value: Any, limit: int) -> str:
    """A value, shortened, for a rejection's detail."""
    try:
        text = str(value)
    except ValueError:  # an int with more digits than str() allows
        text = f"<{type(value).__name__}>"
    return text[:limit]
