"""SenML packs (RFC 8428, JSON), resolved as its sections 4 to 6 say. Pure.

A pack is an array of records. Base fields (`bn`, `bt`, `bu`, `bv`, `bs`,
`bver`) apply to their record and every later one until set again; each
record is resolved (4.6): name = `bn` + `n`, time = `bt` + `t` (below 2**28:
seconds relative to now, 4.5.3), unit = `u` else `bu`, value = `bv` + `v`,
sum = `bs` + `s`. A record holds exactly one of `v`, `vs`, `vb`, `vd`, or
none when it has a sum `s`; a record of base fields alone only sets them.
Fields the hub does not know are ignored; a label ending in `_` must be
understood, so the pack is refused, as is a `bver` the hub does not support
(4.4; RFC 9100 reads `bver` above 10 as a set of features: 26 is version 10
plus secondary units, which the hub understands).

Which series a record names. The resolved name is `<device>` followed by
`<measurement>`, where `<device>` is a device URN (`urn:dev:ow:10e2...`,
`urn:dev:mac:...`, `urn:uuid:...`, `urn:imei:...`) or the id of the device
that sent the pack, followed by `:` or `/`. The metric is the measurement in
snake_case (`urn:dev:ow:10e2073a01080063:voltage` -> `voltage`, as in the
unresolved `{"bn": "urn:dev:ow:10e2073a01080063:", "n": "voltage"}`). A name
that is only a device names it by its unit: `Cel` a `temperature`, `%RH` a
`humidity`, `lat` a `latitude` (`UNIT_METRICS`), so that values of different
units never share a series (section 5.1.3). A name with no device part is the
metric whole (`2001:db8::2/temperature` -> `2001_db8_2_temperature`), so two
devices' readings in one pack (5.1.6) stay apart. One pack carries one
device URN: a record naming another URN is refused, rather than stored as the
sender's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from hub.models import RejectReason

BASE_FIELDS = frozenset({"bn", "bt", "bu", "bv", "bs", "bver"})
REGULAR_FIELDS = frozenset({"n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"})
LABELS = BASE_FIELDS | REGULAR_FIELDS
VALUE_FIELDS = ("v", "vs", "vb", "vd")
VERSION = 10
SECONDARY_UNITS = 1 << 4  # RFC 9100 feature code 4
SUPPORTED_FEATURES = VERSION | SECONDARY_UNITS
RELATIVE_BELOW = 2**28  # 4.5.3
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-:./_]*")  # 4.5.1
DATA = re.compile(r"[A-Za-z0-9_\-]*")  # base64url without padding (4.3)
DEVICE_URN = re.compile(r"urn:(?:dev:[a-z]+|uuid|imei|esn|meid):[^:/]+", re.IGNORECASE)

# The metric a record names by its unit alone (RFC 8428 section 12.1 names).
UNIT_METRICS = {
    "Cel": "temperature",
    "K": "temperature",
    "degF": "temperature",
    "%RH": "humidity",
    "Pa": "pressure",
    "hPa": "pressure",
    "V": "voltage",
    "A": "current",
    "W": "power",
    "J": "energy",
    "kWh": "energy",
    "lat": "latitude",
    "lon": "longitude",
    "%EL": "battery",
    "EL": "battery_remaining",
    "m": "distance",
    "m/s": "speed",
    "lx": "illuminance",
    "Hz": "frequency",
    "dBm": "signal",
    "/": "ratio",
    "%": "percent",
    "count": "count",
    "ppm": "concentration",
}
# The unit of a sum, which is "in the unit ... multiplied by seconds" (4.2).
SUM_UNITS = {"W": "J", "A": "C", "V": "Wb", "m3/s": "m3", "l/s": "l", "/": "s"}


class PackError(Exception):
    """The whole pack is refused (4.4), with a reason and a readable detail."""

    def __init__(self, reason: RejectReason, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class RecordError(Exception):
    """One record is refused; the others stand."""

    def __init__(self, reason: RejectReason, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Resolved:
    """One resolved record: what it names and holds."""

    device: str  # the device part of its resolved name (bn + n), "" for none
    metric: str  # snake_case, not yet checked for length
    time: float  # epoch seconds (relative times resolved)
    value: float | bool | str | None  # None: a record with a sum only
    unit: str | None
    sum: float | None = None


def is_pack(document: list[Any]) -> bool:
    """Whether an array is a SenML pack rather than a batch of envelopes:
    some record uses a SenML label, and none is an envelope."""
    objects = [r for r in document if isinstance(r, dict)]
    if not objects or any("values" in r or "ts" in r or "seq" in r for r in objects):
        return False
    return any(not LABELS.isdisjoint(r) for r in objects)


def check_pack(records: list[Any]) -> None:
    """Refuse what makes the whole pack unusable: a must-understand label,
    a version the hub does not support, or records of different versions."""
    versions = set()
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            continue
        for label in record:
            if isinstance(label, str) and label.endswith("_"):
                raise PackError(
                    RejectReason.INVALID_SENML,
                    f"record {index}: field {label[:40]!r} must be understood, "
                    "and the hub does not know it",
                )
        if "bver" in record:
            version = record["bver"]
            if isinstance(version, bool) or not isinstance(version, int | float):
                raise PackError(RejectReason.INVALID_SENML, f"record {index}: bver is not a number")
            if version != int(version) or version < 1:
                raise PackError(
                    RejectReason.INVALID_SENML, f"record {index}: bver is not a positive integer"
                )
            versions.add(int(version))
    if len(versions) > 1:
        raise PackError(
            RejectReason.INVALID_SENML,
            f"records of different versions {sorted(versions)} in one pack",
        )
    for version in versions:
        features_known = not version & ~SUPPORTED_FEATURES and version & VERSION == VERSION
        if version > VERSION and not features_known:
            raise PackError(
                RejectReason.INVALID_SENML,
                f"bver {version}: the hub supports SenML version {VERSION} "
                f"and {VERSION + SECONDARY_UNITS} (secondary units)",
            )


class Resolver:
    """Resolves a pack's records in order, carrying the base fields."""

    def __init__(self, device_id: str, now_s: float):
        self.device_id = device_id
        self.now_s = now_s
        self.base_name = ""
        self.base_time = 0.0
        self.base_unit: str | None = None
        self.base_value = 0.0
        self.base_sum: float | None = None
        self.pack_device: str | None = None

    def record(self, index: int, record: Any) -> Resolved | None:
        """The resolved record, None for one of base fields alone."""
        if not isinstance(record, dict):
            raise RecordError(RejectReason.INVALID_SENML, f"record {index} is not an object")
        self.base_name = _text(record, "bn", self.base_name, index)
        self.base_time = _number(record, "bt", self.base_time, index)
        self.base_unit = _text(record, "bu", self.base_unit, index) or None
        self.base_value = _number(record, "bv", self.base_value, index)
        if "bs" in record:
            self.base_sum = _number(record, "bs", 0.0, index)
        present = [key for key in VALUE_FIELDS if key in record]
        has_sum = "s" in record
        if not present and not has_sum:
            if REGULAR_FIELDS.isdisjoint(record.keys() - {"ut"}):
                return None  # base fields only (5.1.7's first record)
            raise RecordError(
                RejectReason.INVALID_SENML,
                f"record {index} has no value (v, vs, vb or vd) and no sum (s)",
            )
        if len(present) > 1:
            raise RecordError(
                RejectReason.INVALID_SENML,
                f"record {index} has {len(present)} values ({', '.join(present)}); one is allowed",
            )
        name = self.base_name + _text(record, "n", "", index)
        if not NAME.fullmatch(name):
            raise RecordError(
                RejectReason.INVALID_SENML,
                f"record {index}: name {name[:80]!r} must be A-Z a-z 0-9 - : . / _ "
                "and start with a letter or digit",
            )
        _number(record, "ut", 0.0, index)  # checked, not used
        time = self.base_time + _number(record, "t", 0.0, index)
        if time < RELATIVE_BELOW:
            time += self.now_s
        unit = _text(record, "u", None, index) or self.base_unit
        device, measurement = self.split(name)
        if device and device.startswith("urn:"):
            if self.pack_device is None:
                self.pack_device = device
            elif device.lower() != self.pack_device.lower():
                raise RecordError(
                    RejectReason.INVALID_SENML,
                    f"record {index} names device {device[:80]!r}, the pack "
                    f"{self.pack_device[:80]!r}: one device URN per pack",
                )
        metric = measurement or UNIT_METRICS.get(unit or "", unit or "value")
        total = None
        if has_sum or self.base_sum is not None:  # 4.5.4: a missing one of the two is 0
            total = _number(record, "s", 0.0, index) + (self.base_sum or 0.0)
        value: float | bool | str | None = None
        if present == ["v"]:
            value = _number(record, "v", 0.0, index) + self.base_value
        elif present == ["vb"]:
            value = record["vb"]
            if not isinstance(value, bool):
                raise RecordError(
                    RejectReason.INVALID_SENML, f"record {index}: vb must be a boolean"
                )
        elif present:
            key = present[0]
            text: str = _text(record, key, "", index)
            value = text
            if key == "vd" and not DATA.fullmatch(text):  # kept as its base64 text
                raise RecordError(
                    RejectReason.INVALID_SENML,
                    f"record {index}: vd must be base64url without padding",
                )
        return Resolved(device, metric, time, value, unit, total)

    def split(self, name: str) -> tuple[str, str]:
        """(device part, measurement) of a resolved name (see the module)."""
        match = DEVICE_URN.match(name)
        device = match.group(0) if match else ""
        if not device and name.startswith(self.device_id):
            rest = name[len(self.device_id) :]
            if not rest or rest[0] in ":/":
                device = self.device_id
        return device, name[len(device) :].strip(":/")


def sum_unit(unit: str | None) -> str | None:
    """The unit of a sum of values in `unit`: that unit times seconds."""
    if unit is None:
        return None
    return SUM_UNITS.get(unit, f"{unit}*s")


def _text(record: dict[str, Any], key: str, default: Any, index: int) -> Any:
    if key not in record:
        return default
    value = record[key]
    if not isinstance(value, str):
        raise RecordError(RejectReason.INVALID_SENML, f"record {index}: {key} must be a string")
    return value


def _number(record: dict[str, Any], key: str, default: float, index: int) -> float:
    if key not in record:
        return default
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(RejectReason.INVALID_SENML, f"record {index}: {key} must be a number")
    try:
        number = float(value)
    except OverflowError:  # an int from a document parsed in Python can be huge
        raise RecordError(RejectReason.NON_FINITE, f"record {index}: {key} is too large") from None
    if not math.isfinite(number):
        raise RecordError(
            RejectReason.NON_FINITE, f"record {index}: {key} {number!r} is not finite"
        )
    return number
