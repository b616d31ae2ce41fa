"""The values that cross the hub's boundaries.

Everything here is immutable. A `PendingReading` is what the normalizer makes
of a device payload; the store turns it into a `Reading` by giving it a `seq`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple

MAX_DEVICE_ID = 64
DEVICE_ID_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


@lru_cache(maxsize=65536)
def is_valid_device_id(device_id: str) -> bool:
    # Cached: every message asks, and devices keep their ids.
    return DEVICE_ID_PATTERN.fullmatch(device_id) is not None


class Source(StrEnum):
    """The ingest path a payload arrived on."""

    MQTT = "mqtt"
    SOCKETIO = "socketio"
    HTTP = "http"


class RejectReason(StrEnum):
    """Why (part of) a device payload was not stored. Part of the public interface."""

    INVALID_DEVICE_ID = "invalid_device_id"
    UNKNOWN_DEVICE = "unknown_device"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    INVALID_ENCODING = "invalid_encoding"
    INVALID_JSON = "invalid_json"
    TOO_DEEP = "too_deep"
    TOO_MANY_VALUES = "too_many_values"
    UNSUPPORTED_FORM = "unsupported_form"
    EMPTY = "empty"
    INVALID_TIMESTAMP = "invalid_timestamp"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    INVALID_SEQ = "invalid_seq"
    INVALID_METRIC = "invalid_metric"
    INVALID_VALUE = "invalid_value"
    NON_FINITE = "non_finite"
    UNKNOWN_UNIT = "unknown_unit"
    INCOMPATIBLE_UNIT = "incompatible_unit"
    INVALID_SENML = "invalid_senml"
    INVALID_STATUS = "invalid_status"
    RATE_LIMITED = "rate_limited"
    DEVICE_ID_CONFLICT = "device_id_conflict"


class PendingReading(NamedTuple):
    """A normalized reading that has not been stored yet (so it has no seq).

    Readings are named tuples, not frozen dataclasses: as immutable, and built
    three times faster (0.5 µs against 1.4 µs here), which counts at tens of
    thousands of readings per second. The fields are in the order of the
    `readings` view's columns."""

    device_id: str
    metric: str
    ts: int
    value: float
    unit: str | None
    device_seq: int | None = None


class Reading(NamedTuple):
    """A stored reading. `seq` is the hub-wide, strictly increasing cursor."""

    seq: int
    device_id: str
    metric: str
    ts: int
    value: float
    unit: str | None

    def to_wire(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "device_id": self.device_id,
            "metric": self.metric,
            "ts": self.ts,
            "value": self.value,
            "unit": self.unit,
        }


@dataclass(frozen=True, slots=True)
class Attribute:
    """A string a device reported: its latest value is kept, not a history."""

    device_id: str
    name: str
    value: str
    ts: int


@dataclass(frozen=True, slots=True)
class Rejection:
    """One thing that could not be accepted, kept in the dead-letter table."""

    source: Source
    device_id: str
    reason: RejectReason
    detail: str
    received_ms: int
    excerpt: str

    def to_wire(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "device_id": self.device_id,
            "reason": str(self.reason),
            "detail": self.detail,
            "received_ms": self.received_ms,
            "excerpt": self.excerpt,
        }


@dataclass(frozen=True, slots=True)
class Normalized:
    """What the normalizer made of one device message."""

    readings: tuple[PendingReading, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    rejections: tuple[Rejection, ...] = ()


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """A device came online or went offline; `last_seen` is epoch ms."""

    device_id: str
    online: bool
    last_seen: int

    def to_wire(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "online": self.online, "last_seen": self.last_seen}


@dataclass(frozen=True, slots=True)
class WriteBatch:
    """Everything one store transaction commits."""

    readings: tuple[PendingReading, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    rejections: tuple[Rejection, ...] = ()
    presence: tuple[PresenceChange, ...] = ()
    # device_id -> hub receive time (epoch ms) of the latest message in the batch
    seen: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """What a transaction stored: `stored[i]` tells whether `batch.readings[i]`
    was new (True) or a duplicate of a device seq already stored (False)."""

    readings: tuple[Reading, ...]
    stored: tuple[bool, ...]


@dataclass(frozen=True, slots=True)
class Bucket:
    """An aggregate of one metric over `[ts, ts + bucket)`."""

    ts: int
    min: float
    max: float
    mean: float
    count: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "count": self.count,
        }


@dataclass(frozen=True, slots=True)
class MetricSummary:
    """The latest reading of one metric of one device."""

    metric: str
    unit: str | None
    ts: int
    value: float


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device as the store knows it."""

    device_id: str
    first_seen: int
    last_seen: int
    online: bool
    metrics: tuple[MetricSummary, ...]
    attributes: tuple[Attribute, ...]


class KnownDevice(NamedTuple):
    """What the hub needs of each stored device when it starts: its presence,
    and which source holds its id (the `source` and `name` attributes)."""

    device_id: str
    online: bool
    last_seen: int
    source: str | None
    name: str | None


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """An admin command to a device and how it ended (`outcome`: ok, error,
    timeout, offline, invalid_reply)."""

    id: str
    device_id: str
    name: str
    args: str  # JSON
    link: str | None  # "socketio", "mqtt", or None when it was never sent
    sent_ms: int
    done_ms: int
    outcome: str
    reply: str | None  # JSON

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "device_id": self.device_id,
            "name": self.name,
            "args": self.args,
            "link": self.link,
            "sent_ms": self.sent_ms,
            "done_ms": self.done_ms,
            "outcome": self.outcome,
            "reply": self.reply,
        }


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """A device's link came up or went down (`link` names it, e.g. `mqtt`)."""

    device_id: str
    link: str
    up: bool


@dataclass(frozen=True, slots=True)
class Accepted:
    """What one submission came to, once committed."""

    accepted: int
    duplicates: int
    rejected: int
    reasons: tuple[str, ...] = ()

    def to_wire(self) -> dict[str, object]:
        answer: dict[str, object] = {
            "ok": True,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
        }
        if self.reasons:
            answer["reasons"] = list(self.reasons)
        return answer


class Refusal(StrEnum):
    """Why a device message that waits for its answer was not stored."""

    INVALID = "invalid"  # nothing in it could be accepted (see the rejection reason)
    RATE_LIMITED = "rate_limited"  # over its device's rate: retry after a while
    BUSY = "busy"  # the store is behind or cannot write: retry after a while
    CLOSING = "closing"  # the hub is shutting down: retry elsewhere or later
    UNAVAILABLE = "unavailable"  # the commit failed: retry


@dataclass(frozen=True, slots=True)
class Outcome:
    """The answer the ingest pipeline gives a device message (HTTP, Socket.IO):
    stored, with its counts, or refused, with why and when to try again."""

    stored: Accepted | None = None
    refusal: Refusal | None = None
    reason: str = ""  # the rejection reason of an invalid message
    detail: str = ""
    rejected: int = 0
    retry_after: float | None = None
