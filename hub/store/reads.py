"""What the stores' read queries share, whatever their SQL: the range and
order a history query asks for, and the rows put in the hub's shapes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hub.models import Attribute, Bucket, DeviceRecord, MetricSummary, Reading

FAR = 2**62  # beyond any ts or seq


def window(start: int | None, end: int | None) -> tuple[int, int, str]:
    """The ts range of a history query and its SQL order: from `start` on,
    oldest first; without a start, the latest (newest first, turned back by
    `oldest_first`)."""
    lower = start if start is not None else -FAR
    upper = end if end is not None else FAR
    return lower, upper, "ASC" if start is not None else "DESC"


def oldest_first(found: list[Reading], start: int | None, limit: int) -> list[Reading]:
    """The `limit` readings a history query answers, from several series'
    rows fetched in `window`'s order."""
    found.sort(key=lambda r: (r.ts, r.seq), reverse=start is None)
    readings = found[:limit]
    return readings if start is not None else readings[::-1]


def buckets_of(rows: Iterable[Any], start: int | None) -> list[Bucket]:
    """(bucket, min, max, mean, count) rows fetched in `window`'s order, oldest first."""
    buckets = [Bucket(int(b), mn, mx, mean, int(n)) for b, mn, mx, mean, n in rows]
    return buckets if start is not None else buckets[::-1]


def device_records(
    devices: Iterable[Any], metrics: Iterable[Any], attributes: Iterable[Any]
) -> list[DeviceRecord]:
    """Devices (id, first_seen, last_seen, online), with their latest values
    (device_id, metric, unit, ts, value) and attributes (device_id, name,
    value, ts), each in order."""
    latest: dict[str, list[MetricSummary]] = {}
    for device_id, metric, unit, ts, value in metrics:
        latest.setdefault(device_id, []).append(MetricSummary(metric, unit, ts, value))
    named: dict[str, list[Attribute]] = {}
    for device_id, name, value, ts in attributes:
        named.setdefault(device_id, []).append(Attribute(device_id, name, value, ts))
    return [
        DeviceRecord(
            device_id,
            first_seen,
            last_seen,
            bool(online),
            tuple(latest.get(device_id, ())),
            tuple(named.get(device_id, ())),
        )
        for device_id, first_seen, last_seen, online in devices
    ]
