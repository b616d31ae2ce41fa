"""The single writer: group commit between the ingest adapters and the store.

Adapters hand it normalized messages; it gathers what arrives within a
linger (or until `batch_max` readings), commits that as one
transaction and resolves every submitter's future (their acknowledgement).
The store hands what each commit stored to its log's followers (the live
path, `hub.live`). Being the only writer is what keeps `seq` in commit order
and presence transitions in the order their causes were committed.

The queue of submissions is bounded (`queue_max`): when the store falls
behind, MQTT waits (and stops reading, so the broker holds on), while HTTP
and Socket.IO are told at once that the hub is busy (`HubBusy`), with a
retry hint. A commit that fails is retried with backoff until it succeeds,
holding everything behind it: nothing is acknowledged that is not stored, and
nothing received is dropped. Meanwhile `failing` says why.

The linger: a batch waits `commit_linger` (none by default: what arrives
during a commit joins the next) for more to join it, or `commit_linger_busy`
(20 ms) while devices are busy. A commit writes every
page it touches to the WAL whole, and each device's messages touch pages of
their own (its series' ends in the indexes), however few of its readings a
commit holds (docs/performance.md, issue 13). So waiting pays when a device's
messages then share a commit: when, over the last second, a message would
have found another of its device's within `commit_linger_busy` (devices
sending faster than 50 messages a second, on average weighted by messages).
Slower devices gain nothing from a longer wait, and get none.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from hub.errors import HubBusy, HubClosing, StoreError
from hub.metrics import Metrics
from hub.models import (
    Accepted,
    LinkEvent,
    Normalized,
    PresenceChange,
    Source,
    WriteBatch,
    WriteOutcome,
)
from hub.pacing import backoff_delay
from hub.presence import Presence
from hub.store.base import Store

log = logging.getLogger(__name__)

SLOW_COMMIT = 0.1  # seconds; slower commits are logged
RETRY_FIRST = 0.05  # seconds before the first retry of a failed commit (about)
RETRY_MAX = 2.0  # seconds between retries at most
RETRIES_WHEN_CLOSING = 6  # then a closing hub gives up (0.05 doubled 6 times: 3.2 s > 2 s)
BUSY_RETRY_AFTER = 1.0  # seconds a busy client is told to wait
RETENTION_CATCH_UP = 0.05  # seconds between retention steps while behind
PACE_WINDOW = 1.0  # seconds over which messages per device are counted
PACE_DEVICES_MAX = 10_000  # devices counted in a window at most; more: too many, too slow


class DevicePace:
    """How fast devices send, as it matters to a commit: the messages of its
    own device that a message would find within `linger` (the mean over the
    last second, weighted by messages). From 1 on, the devices are busy."""

    def __init__(self, linger: float, monotonic: Callable[[], float] = time.monotonic):
        self.linger = linger
        self.monotonic = monotonic
        self.sharing = 0.0
        self._counts: dict[str, int] = {}
        self._overflow = False
        self._start = monotonic()

    @property
    def busy(self) -> bool:
        # A window is closed by the next message: none for two windows, quiet.
        quiet = self.monotonic() - self._start > 2 * PACE_WINDOW
        return self.sharing >= 1.0 and not quiet

    def count(self, device_ids: Sequence[str]) -> None:
        """Messages from these devices (one entry per message) were received."""
        counts = self._counts
        for device_id in device_ids:
            if device_id in counts:
                counts[device_id] += 1
            elif len(counts) < PACE_DEVICES_MAX:
                counts[device_id] = 1
            else:
                self._overflow = True
        elapsed = self.monotonic() - self._start
        if elapsed >= PACE_WINDOW:
            total = sum(counts.values())
            # a message of a device sending n in the window finds n/elapsed *
            # linger others within `linger`; weighted by messages
            squares = sum(n * n for n in counts.values())
            self.sharing = (
                0.0 if self._overflow or not total else (self.linger * squares / (total * elapsed))
            )
            self._counts, self._overflow, self._start = {}, False, self.monotonic()


@dataclass(slots=True)
class _Submission:
    source: Source
    received_ms: int
    messages: Sequence[Normalized]
    # devices heard from (valid ids only) and link changes, applied to presence in order
    seen: Sequence[str]
    links: Sequence[LinkEvent]
    future: asyncio.Future[Accepted]
    # link kinds lost altogether (the broker connection dropped: "mqtt")
    dropped: Sequence[str] = ()
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = sum(len(m.readings) for m in self.messages) or 1


class Writer:
    def __init__(
        self,
        store: Store,
        presence: Presence,
        metrics: Metrics,
        *,
        batch_max: int = 2000,
        linger: float = 0.0,
        linger_busy: float = 0.02,
        queue_max: int = 1000,
        presence_interval: float = 1.0,
        retention_ms: int = 0,
        retention_batch: int = 5000,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.presence = presence
        self.metrics = metrics
        self.batch_max = batch_max
        self.linger = linger
        self.linger_busy = linger_busy
        self.presence_interval = presence_interval
        self.retention_ms = retention_ms
        self.retention_batch = retention_batch
        self.clock = clock
        self._queue: asyncio.Queue[_Submission | None] = asyncio.Queue(queue_max)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._rng = random.Random()
        self.failing: str | None = None
        self.pace = DevicePace(linger_busy, monotonic)

    async def __aenter__(self) -> Writer:
        self._task = asyncio.create_task(self._run(), name="writer")
        self._task.add_done_callback(self._stopped)
        return self

    def _stopped(self, task: asyncio.Task[None]) -> None:
        """The loop ended by an error a store did not turn into a StoreError:
        nothing is committed from now on, so the hub must not say it is ready
        (nor tell devices to wait for commits that will not come)."""
        if task.cancelled() or task.exception() is None:
            return
        self.failing = f"the writer stopped: {task.exception()!r}"
        log.error("the writer stopped; nothing more is committed", exc_info=task.exception())

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Take nothing new, commit everything already submitted, then stop."""
        if self._closing or self._task is None:
            return
        self._closing = True
        await self._queue.put(None)
        await self._task

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def enqueue(
        self,
        source: Source,
        received_ms: int,
        messages: Sequence[Normalized],
        seen: Sequence[str] = (),
        links: Sequence[LinkEvent] = (),
        *,
        wait: bool = True,
        dropped: Sequence[str] = (),
    ) -> asyncio.Future[Accepted]:
        """Queue messages for the next commit; the future resolves once they are
        durable. While the queue is full this waits, or with `wait=False`
        raises `HubBusy`, as it does at once while commits fail (a full disk):
        a device that can retry keeps its messages until the store takes them."""
        if self._closing:
            raise HubClosing()
        if not wait and self.failing is not None:
            self.metrics.inc("hub_busy_total", source=str(source))
            raise HubBusy(BUSY_RETRY_AFTER, f"the store cannot write ({self.failing})")
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        submission = _Submission(source, received_ms, messages, seen, links, future, dropped)
        if wait:
            await self._queue.put(submission)
        else:
            try:
                self._queue.put_nowait(submission)
            except asyncio.QueueFull:
                self.metrics.inc("hub_busy_total", source=str(source))
                raise HubBusy(BUSY_RETRY_AFTER) from None
        return future

    def record_rejected(self, source: Source, received_ms: int, rejected: Normalized) -> None:
        """Queue rejections for the dead-letter table without waiting: a device
        being refused (rate limited, say) must not hold up the handler. When
        the queue is full they are only counted."""
        if self._closing:
            return
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Submission(source, received_ms, [rejected], (), (), future))
        except asyncio.QueueFull:
            for rejection in rejected.rejections:
                self.metrics.inc(
                    "hub_rejections_total", source=str(source), reason=str(rejection.reason)
                )

    async def submit(
        self,
        source: Source,
        received_ms: int,
        messages: Sequence[Normalized],
        seen: Sequence[str] = (),
        links: Sequence[LinkEvent] = (),
        *,
        wait: bool = True,
        within: float | None = None,
    ) -> Accepted:
        """`enqueue` and wait for the commit, at most `within` seconds: past
        that `HubBusy` (the messages stay queued and will be committed; a
        device that sends them again is deduplicated by its seq)."""
        future = await self.enqueue(source, received_ms, messages, seen, links, wait=wait)
        try:
            return await asyncio.wait_for(asyncio.shield(future), within)
        except TimeoutError:
            self.metrics.inc("hub_ack_timeouts_total", source=str(source))
            raise HubBusy(BUSY_RETRY_AFTER) from None

    # -- the loop -----------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_chores = loop.time() + self.presence_interval
        stopping = False
        while not stopping:
            batch: list[_Submission] = []
            try:
                first = await asyncio.wait_for(
                    self._queue.get(), max(0.0, next_chores - loop.time())
                )
            except TimeoutError:
                first = None
                if not self._closing:
                    next_chores = loop.time() + await self._chores()
                    continue
            if first is None:
                stopping = True
            else:
                batch.append(first)
                linger = self.linger_busy if self.pace.busy else self.linger
                stopping = await self._gather(batch, loop.time() + linger)
            await self._commit(batch, expire=False)
            if loop.time() >= next_chores and not stopping:
                next_chores = loop.time() + await self._chores()

    async def _chores(self) -> float:
        """Periodic work between commits: presence timeouts, then one small
        retention step. Returns when to come back: soon while retention has a
        backlog, so it catches up in small transactions between commits."""
        await self._commit([], expire=True)
        if self.retention_ms <= 0:
            return self.presence_interval
        try:
            deleted = await self.store.purge(
                self.now_ms() - self.retention_ms, self.retention_batch
            )
        except StoreError as exc:
            log.error("retention step failed: %s", exc)
            return self.presence_interval
        if deleted:
            self.metrics.inc("hub_readings_purged_total", deleted)
        return RETENTION_CATCH_UP if deleted >= self.retention_batch else self.presence_interval

    async def _gather(self, batch: list[_Submission], deadline: float) -> bool:
        """Add submissions to `batch` until it is full or `deadline` passes.
        Returns True when the close sentinel was met."""
        size = batch[0].size
        loop = asyncio.get_running_loop()
        while size < self.batch_max:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0 or self._closing:
                    return False
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    return False
            if item is None:
                return True
            batch.append(item)
            size += item.size
        return False

    async def _commit(self, batch: list[_Submission], *, expire: bool) -> None:
        now = self.now_ms()
        write = self._compose(batch, now, expire)
        if not (
            write.readings or write.attributes or write.rejections or write.presence or write.seen
        ):
            for item in batch:  # nothing to write, e.g. a link event that changed nothing
                if not item.future.done():
                    item.future.set_result(Accepted(0, 0, 0))
            return
        started = time.perf_counter()
        outcome = await self._write(write, batch)
        if outcome is None:
            return
        took = time.perf_counter() - started
        self.metrics.inc("hub_commits_total")
        self.metrics.inc("hub_commit_seconds_total", took)
        if took > SLOW_COMMIT:
            log.warning("slow commit: %d readings took %.0f ms", len(write.readings), took * 1000)
        position = 0
        for item in batch:
            count = sum(len(m.readings) for m in item.messages)
            flags = outcome.stored[position : position + count]
            position += count
            accepted = sum(flags)
            rejections = [r for m in item.messages for r in m.rejections]
            if accepted:
                self.metrics.inc("hub_readings_stored_total", accepted, source=str(item.source))
            if count - accepted:
                self.metrics.inc("hub_readings_duplicate_total", count - accepted)
            for rejection in rejections:
                self.metrics.inc(
                    "hub_rejections_total", source=str(item.source), reason=str(rejection.reason)
                )
            if not item.future.done():
                item.future.set_result(
                    Accepted(
                        accepted,
                        count - accepted,
                        len(rejections),
                        tuple(dict.fromkeys(f"{r.reason}: {r.detail}" for r in rejections))[:10],
                    )
                )

    async def _write(self, write: WriteBatch, batch: list[_Submission]) -> WriteOutcome | None:
        """Commit, retrying with backoff for as long as the store refuses: the
        batch and everything queued behind it wait, unacknowledged. Only when
        closing does it give up, failing the submitters (nothing was stored,
        so MQTT's broker delivers those messages again later)."""
        attempt = 0
        while True:
            try:
                outcome = await self.store.write(write)
            except StoreError as exc:
                self.metrics.inc("hub_commit_failures_total")
                if self.failing is None:
                    log.error(
                        "commit of %d readings failed, retrying: %s", len(write.readings), exc
                    )
                self.failing = str(exc)
                if self._closing and attempt >= RETRIES_WHEN_CLOSING:
                    for item in batch:
                        if not item.future.done():
                            item.future.set_exception(exc)
                    return None
                await asyncio.sleep(backoff_delay(attempt, RETRY_FIRST, RETRY_MAX, self._rng))
                attempt += 1
                continue
            if self.failing is not None:
                log.warning("commits succeed again")
                self.failing = None
            return outcome

    def _compose(self, batch: list[_Submission], now: int, expire: bool) -> WriteBatch:
        presence: list[PresenceChange] = []
        seen: dict[str, int] = {}
        for item in batch:
            for link in item.dropped:
                presence.extend(self.presence.drop_links(link, item.received_ms))
            for event in item.links:
                change = (self.presence.link_up if event.up else self.presence.link_down)(
                    event.device_id, event.link, item.received_ms
                )
                if change is not None:
                    presence.append(change)
            self.pace.count(item.seen)
            for device_id in item.seen:
                seen[device_id] = max(seen.get(device_id, 0), item.received_ms)
                change = self.presence.seen(device_id, item.received_ms)
                if change is not None:
                    presence.append(change)
        if expire:
            presence.extend(self.presence.expire(now))
        return WriteBatch(
            readings=tuple(r for item in batch for m in item.messages for r in m.readings),
            attributes=tuple(a for item in batch for m in item.messages for a in m.attributes),
            rejections=tuple(r for item in batch for m in item.messages for r in m.rejections),
            presence=tuple(presence),
            seen=seen,
        )
