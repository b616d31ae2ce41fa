"""Fakes of the hub's own interfaces for the unit tier: a store in memory that
keeps the `Store` protocol's promises (seq strictly increasing and never
reused, dedup by device seq, one batch at a time), and can be told to fail."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import orjson

from hub.errors import StoreError
from hub.models import (
    Attribute,
    Bucket,
    CommandRecord,
    DeviceRecord,
    MetricSummary,
    Reading,
    Rejection,
    WriteBatch,
    WriteOutcome,
)
from hub.store.base import Store
from hub.store.feed import Committed, Feed, Follower


@dataclass
class FakeStore:
    """The `Store` protocol in memory."""

    epoch: str = "fake-epoch"
    failing: str | None = None
    refuse: str | None = None  # set: every write raises StoreError with this
    writes: list[WriteBatch] = field(default_factory=list)  # every batch committed
    stored: list[Reading] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    command_records: list[CommandRecord] = field(default_factory=list)
    purged_through: int = 0
    gate: asyncio.Event | None = None  # set: writes wait for it (a slow store)
    read_gate: asyncio.Event | None = None  # set: readings_after waits for it (a slow replay)
    feed: Feed = field(default_factory=Feed)
    log: list[Committed] = field(default_factory=list)  # every entry handed to the feed
    _head: int = 0
    _keys: set[tuple[str, int, str]] = field(default_factory=set)
    _devices: dict[str, DeviceRecord] = field(default_factory=dict)

    @property
    def head(self) -> int:
        return self._head

    def status(self) -> dict[str, object]:
        return {"path": ":memory:", "failing": self.failing}

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def write(self, batch: WriteBatch) -> WriteOutcome:
        if self.gate is not None:
            await self.gate.wait()
        if self.refuse is not None:
            raise StoreError("write", self.refuse)
        readings: list[Reading] = []
        stored: list[bool] = []
        after = self._head
        for pending in batch.readings:
            self._head += 1  # a duplicate consumes a number too, as in SQLite
            key = (pending.device_id, pending.device_seq or 0, pending.metric)
            if pending.device_seq is not None and key in self._keys:
                stored.append(False)
                continue
            self._keys.add(key)
            reading = Reading(
                self._head,
                pending.device_id,
                pending.metric,
                pending.ts,
                pending.value,
                pending.unit,
            )
            readings.append(reading)
            stored.append(True)
        self.stored += readings
        self.rejected += batch.rejections
        for device_id, seen in batch.seen.items():
            self._device(device_id, seen)
        for change in batch.presence:
            record = self._device(change.device_id, change.last_seen)
            self._devices[change.device_id] = DeviceRecord(
                record.device_id, record.first_seen, record.last_seen, change.online, (), ()
            )
        self.writes.append(batch)
        entry = Committed(after, self._head, tuple(readings), batch.presence)
        self.log.append(entry)
        self.feed.committed(entry)
        return WriteOutcome(tuple(readings), tuple(stored))

    def follow(self, after: int) -> Follower:
        return self.feed.follow(after, self._read_back)

    async def _read_back(self, after: int, upto: int, limit: int) -> list[Reading]:
        return await self.readings_after(after, upto, None, limit)

    def _device(self, device_id: str, seen: int) -> DeviceRecord:
        old = self._devices.get(device_id)
        record = DeviceRecord(
            device_id,
            old.first_seen if old else seen,
            max(seen, old.last_seen if old else seen),
            old.online if old else False,
            (),
            (),
        )
        self._devices[device_id] = record
        return record

    async def readings(
        self, device_id: str, metric: str, start: int | None, end: int | None, limit: int
    ) -> list[Reading]:
        found = [
            r
            for r in self.stored
            if (r.device_id, r.metric) == (device_id, metric)
            and (start is None or r.ts >= start)
            and (end is None or r.ts <= end)
        ]
        found.sort(key=lambda r: (r.ts, r.seq))
        return found[:limit] if start is not None else found[-limit:]

    async def buckets(
        self,
        device_id: str,
        metric: str,
        start: int | None,
        end: int | None,
        bucket_ms: int,
        limit: int,
        through: int | None = None,
    ) -> list[Bucket]:
        values: dict[int, list[float]] = {}
        for r in await self.readings(device_id, metric, start, end, len(self.stored) or 1):
            if through is None or r.seq <= through:
                values.setdefault(r.ts // bucket_ms * bucket_ms, []).append(r.value)
        return [
            Bucket(ts, min(v), max(v), sum(v) / len(v), len(v)) for ts, v in sorted(values.items())
        ][:limit]

    async def readings_after(
        self, seq: int, upto: int, device_ids: Collection[str] | None, limit: int
    ) -> list[Reading]:
        if self.read_gate is not None:
            await self.read_gate.wait()
        return [
            r
            for r in self.stored
            if seq < r.seq <= upto and (device_ids is None or r.device_id in device_ids)
        ][:limit]

    async def count_after(
        self, seq: int, upto: int, device_ids: Collection[str] | None, limit: int
    ) -> int:
        return len(await self.readings_after(seq, upto, device_ids, limit))

    async def purge(self, before_ts: int, limit: int) -> int:
        gone = [r for r in self.stored[:limit] if r.ts < before_ts]
        if gone:
            self.purged_through = gone[-1].seq
            self.stored = self.stored[len(gone) :]
        return len(gone)

    async def metric_unit(self, device_id: str, metric: str) -> str | None:
        units = [r.unit for r in self.stored if (r.device_id, r.metric) == (device_id, metric)]
        return units[-1] if units else None

    async def devices(self) -> list[DeviceRecord]:
        latest: dict[str, dict[str, MetricSummary]] = {}
        for r in self.stored:
            latest.setdefault(r.device_id, {})[r.metric] = MetricSummary(
                r.metric, r.unit, r.ts, r.value
            )
        return [
            DeviceRecord(
                d.device_id,
                d.first_seen,
                d.last_seen,
                d.online,
                tuple(latest.get(d.device_id, {}).values()),
                tuple[Attribute, ...](),
            )
            for d in sorted(self._devices.values(), key=lambda d: d.device_id)
        ]

    async def rejections(self, limit: int) -> list[Rejection]:
        return self.rejected[::-1][:limit]

    async def rejection_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.rejected:
            counts[str(r.reason)] = counts.get(str(r.reason), 0) + 1
        return counts

    async def record_command(self, record: CommandRecord) -> None:
        self.command_records.append(record)

    async def commands(self, device_id: str | None, limit: int) -> list[CommandRecord]:
        found = [c for c in self.command_records if device_id in (None, c.device_id)]
        return found[::-1][:limit]


class FakeServer:
    """The python-socketio server calls the live path makes (rooms, emit),
    kept in memory: what each client would have received, decoded as it
    would decode it. Each client is also a room of its own, as in
    python-socketio."""

    def __init__(self) -> None:
        self.rooms: dict[str, set[str]] = {}
        self.received: dict[str, list[tuple[str, Any]]] = {}

    async def enter_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        self.rooms.setdefault(room, set()).add(sid)

    async def leave_room(self, sid: str, room: str, namespace: str | None = None) -> None:
        self.rooms.get(room, set()).discard(sid)

    async def emit(
        self, event: str, data: Any, to: str | list[str], namespace: str | None = None
    ) -> None:
        decoded = orjson.loads(orjson.dumps(data))
        for target in [to] if isinstance(to, str) else to:
            for sid in self.rooms.get(target, {target}):
                self.received.setdefault(sid, []).append((event, decoded))

    def seqs(self, sid: str) -> list[int]:
        """The seqs of every reading the client received, in order."""
        return [
            r["seq"]
            for event, data in self.received.get(sid, [])
            if event == "readings"
            for r in data["readings"]
        ]

    def events(self, sid: str, event: str) -> list[Any]:
        return [data for name, data in self.received.get(sid, []) if name == event]


class FakeEngine:
    """python-engineio's per-client queues as the live path sees them: a
    count of packets waiting, set by the test."""

    def __init__(self) -> None:
        self.waiting: dict[str, int] = {}

    def queued(self, sid: str, namespace: str) -> int:
        return self.waiting.get(sid, 0)

    def release_all(self) -> None:
        pass


def as_store(store: FakeStore) -> Store:
    """mypy checks here that the fake keeps to the protocol."""
    return store
