"""The store interface: the handful of calls the hub makes.

SQLite (`hub.store.sqlite`) is the default backend; PostgreSQL
(`hub.store.postgres`) implements the same protocol for a cluster of hubs.
A backend assigns `seq` when it commits, keeps it strictly increasing and
never reuses it, and keeps an `epoch` that changes only when the store is
recreated. Its log can be followed (`follow`): what
each commit stored, handed over in seq order with none skipped, whichever
writer committed it (`hub.store.feed`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from hub.models import (
    Bucket,
    CommandRecord,
    DeviceRecord,
    KnownDevice,
    Reading,
    Rejection,
    WriteBatch,
    WriteOutcome,
)
from hub.store.device_pages import DeviceCounts, DevicePage, DeviceQuery
from hub.store.feed import Follower


class Store(Protocol):
    @property
    def epoch(self) -> str:
        """Names this store's lifetime; cursors of another epoch are stale."""

    @property
    def head(self) -> int:
        """The highest committed seq (0 for an empty store)."""

    @property
    def failing(self) -> str | None:
        """Why the store cannot keep itself within its bounds (its checkpoints
        fail on a full disk, say), or None. Commits may still succeed."""

    def status(self) -> dict[str, object]:
        """What /readyz shows of the store besides epoch and head."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, batch: WriteBatch) -> WriteOutcome:
        """Commit everything in `batch` in one transaction."""

    def follow(self, after: int) -> Follower:
        """Everything committed after seq `after`: the readings in seq order,
        none skipped, with the presence changes committed beside them."""

    async def readings(
        self, device_id: str, metric: str, start: int | None, end: int | None, limit: int
    ) -> list[Reading]:
        """Up to `limit` readings, oldest first: from `start` on if given, else the latest."""

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
        """min/max/mean/count per `bucket_ms`, aligned to the epoch, oldest
        first; of the readings up to seq `through` when given."""

    @property
    def purged_through(self) -> int:
        """Retention deleted every reading with seq up to this (0: none)."""

    async def readings_after(
        self, seq: int, upto: int, device_ids: Collection[str] | None, limit: int
    ) -> list[Reading]:
        """Readings with `seq` < seq <= `upto`, ascending, of these devices (None: all)."""

    async def count_after(
        self, seq: int, upto: int, device_ids: Collection[str] | None, limit: int
    ) -> int:
        """How many `readings_after` would return without a limit, counting at most `limit`."""

    async def purge(self, before_ts: int, limit: int) -> int:
        """Delete up to `limit` of the oldest readings whose ts is before `before_ts`."""

    async def metric_unit(self, device_id: str, metric: str) -> str | None: ...

    async def devices(self) -> list[DeviceRecord]: ...

    async def known_devices(self) -> list[KnownDevice]:
        """Each device's presence and holder, for the hub's start (cheaper
        than `devices`: no latest values)."""

    async def device_page(self, query: DeviceQuery) -> DevicePage:
        """One page of devices in id order (`hub.store.device_pages`)."""

    async def device(self, device_id: str) -> DeviceRecord | None:
        """One device with its latest values and attributes, None if unknown."""

    async def device_counts(self, stale_before: int) -> DeviceCounts:
        """How many devices by status and group."""

    async def enroll(self, devices: Sequence[tuple[str, str]]) -> None:
        """The devices `[[devices]]` lists, (id, group): a row for each not
        yet known (never heard from: first_seen 0) and its group as the
        attribute `group`, so that pages and counts find them."""

    async def rejections(self, limit: int) -> list[Rejection]: ...

    async def rejection_counts(self) -> dict[str, int]: ...

    async def record_command(self, record: CommandRecord) -> None:
        """Keep an admin command and its outcome (its own small transaction)."""

    async def commands(self, device_id: str | None, limit: int) -> list[CommandRecord]: ...
