"""Cursor replay: a dashboard that comes back gets what it missed, then live.

python-socketio has no connection-state recovery, so the hub builds it on its
store. A client that connects with `auth.cursor = {"epoch", "seq"}` and then
subscribes is not put in its live room at once. Its replay:

1. says `gap` and goes live from HEAD when the cursor is of another epoch
   (`epoch`), or when more than `replay.max_backlog` readings are missing
   (`backlog`); says `gap` for what retention deleted (`retention`) and
   replays the rest;
2. waits for one of `replay.max_concurrent` slots (FIFO, so a reconnect
   storm is served in arrival order);
3. announces `replay` start, sends the missed readings from the store in
   pages of `replay.page_size`, at most `replay.rate` per second (a token
   bucket holding `replay.burst`), never more than a few frames ahead of what
   the client has taken off its connection;
4. catches up, without the rate limit, with what was committed meanwhile
   (that is live traffic arriving late, not history), and once it is close
   enough to the broadcaster's head, reads the last stretch and joins the live
   room under the broadcaster's lock, so no seq is missed or repeated;
5. announces `replay` end.

Replay reads use the store's reader connection, never the writer's, so they
do not delay commits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import socketio

from hub.broadcast import DASHBOARD, Broadcaster, Subscription
from hub.config import ReplaySettings
from hub.metrics import Metrics
from hub.models import Reading
from hub.store.base import Store

log = logging.getLogger(__name__)

# Seq distance from the broadcaster's head within which the last stretch is
# read under the broadcaster's lock (which holds back live frames meanwhile).
CATCH_UP_WINDOW = 2000
# Frames a client may have queued, unsent, before replay waits for it.
MAX_QUEUED_FRAMES = 4
# A client that takes nothing off its connection for this long loses its replay.
STALL_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Cursor:
    epoch: str
    seq: int

    @classmethod
    def parse(cls, value: Any) -> Cursor | None:
        if not isinstance(value, dict):
            return None
        epoch, seq = value.get("epoch"), value.get("seq")
        if not isinstance(epoch, str) or isinstance(seq, bool) or not isinstance(seq, int):
            return None
        return cls(epoch, max(0, seq))


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = burst
        self.stamp = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    async def take(self, count: int) -> None:
        """Wait until `count` tokens (at most `burst`) are there, and spend them."""
        self._refill()
        if self.tokens < count:
            await asyncio.sleep((count - self.tokens) / self.rate)
            self._refill()
        self.tokens -= count


class ClientStalled(Exception):
    """The client took nothing off its connection for STALL_TIMEOUT."""


class Replayer:
    def __init__(
        self,
        sio: socketio.AsyncServer,
        store: Store,
        broadcaster: Broadcaster,
        settings: ReplaySettings,
        metrics: Metrics,
    ) -> None:
        self.sio = sio
        self.store = store
        self.broadcaster = broadcaster
        self.settings = settings
        self.metrics = metrics
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.active = 0

    @property
    def queued(self) -> int:
        return len(self._tasks) - self.active

    def start(self, sid: str, subscription: Subscription, cursor: Cursor) -> None:
        task = asyncio.create_task(self._run(sid, subscription, cursor), name=f"replay-{sid}")
        self._tasks[sid] = task
        task.add_done_callback(lambda _: self._tasks.pop(sid, None))

    async def wait(self, sid: str) -> None:
        """Until the client's replay (if any) is over."""
        task = self._tasks.get(sid)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def cancel(self, sid: str) -> None:
        task = self._tasks.pop(sid, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- one client's replay ------------------------------------------------

    async def _run(self, sid: str, subscription: Subscription, cursor: Cursor) -> None:
        devices = None if subscription.everything else subscription.devices
        try:
            if cursor.epoch != self.store.epoch:
                await self._live(sid, subscription, cursor.seq, "epoch")
                return
            start = cursor.seq
            if start < self.store.purged_through:
                await self._emit(
                    "gap",
                    {"from": start, "to": self.store.purged_through, "reason": "retention"},
                    sid,
                )
                self.metrics.inc("hub_replay_gaps_total", reason="retention")
                start = self.store.purged_through
            async with self._slots:
                self.active += 1
                try:
                    await self._replay(sid, subscription, devices, start)
                finally:
                    self.active -= 1
        except ClientStalled:
            log.warning("replay to %s stopped: the client stalled", sid)
            self.metrics.inc("hub_replays_total", outcome="stalled")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("replay to %s failed", sid)
            self.metrics.inc("hub_replays_total", outcome="failed")

    async def _replay(
        self, sid: str, subscription: Subscription, devices: frozenset[str] | None, start: int
    ) -> None:
        target = self.broadcaster.head
        if start >= target:
            await self._live(sid, subscription, start, None)
            return
        limit = self.settings.max_backlog
        count = await self.store.count_after(start, target, devices, limit + 1)
        if count > limit:
            await self._live(sid, subscription, start, "backlog")
            return
        await self._emit(
            "replay", {"state": "start", "from": start, "to": target, "count": count}, sid
        )
        page = min(self.settings.page_size, self.settings.burst)
        bucket = TokenBucket(self.settings.rate, self.settings.burst)
        sent = await self._pump(sid, start, target, devices, page, bucket)
        last = target
        while True:
            async with self.broadcaster.lock:
                head = self.broadcaster.head
                if head - last <= CATCH_UP_WINDOW:
                    rest = await self.store.readings_after(last, head, devices, CATCH_UP_WINDOW)
                    if rest:
                        await self._send(sid, rest)
                    await self.broadcaster.place(sid, subscription)
                    await self._emit(
                        "replay",
                        {"state": "end", "from": start, "to": head, "count": sent + len(rest)},
                        sid,
                    )
                    self.metrics.inc("hub_replays_total", outcome="complete")
                    return
            # Committed while we replayed: live traffic arriving late, so unthrottled.
            sent += await self._pump(sid, last, head, devices, page, None)
            last = head

    async def _live(
        self, sid: str, subscription: Subscription, start: int, reason: str | None
    ) -> None:
        """Go live from HEAD, first saying `gap` when something will not be sent."""
        async with self.broadcaster.lock:
            head = self.broadcaster.head
            if reason is not None:
                await self._emit("gap", {"from": start, "to": head, "reason": reason}, sid)
                self.metrics.inc("hub_replay_gaps_total", reason=reason)
            await self.broadcaster.place(sid, subscription)

    async def _pump(
        self,
        sid: str,
        after: int,
        upto: int,
        devices: frozenset[str] | None,
        page: int,
        bucket: TokenBucket | None,
    ) -> int:
        sent = 0
        while after < upto:
            rows = await self.store.readings_after(after, upto, devices, page)
            if not rows:
                break
            if bucket is not None:
                await bucket.take(len(rows))
            await self._drained(sid)
            await self._send(sid, rows)
            sent += len(rows)
            after = rows[-1].seq
        return sent

    async def _send(self, sid: str, rows: list[Reading]) -> None:
        frame = self.broadcaster.frame([r.to_wire() for r in rows], replay=True)
        await self._emit("readings", frame, sid)
        self.metrics.inc("hub_replay_readings_total", len(rows))

    async def _emit(self, event: str, data: dict[str, Any], sid: str) -> None:
        await self.sio.emit(event, data, to=sid, namespace=DASHBOARD)

    async def _drained(self, sid: str) -> None:
        """Wait while the client has more than a few frames queued and unsent:
        python-engineio's per-client queue is unbounded, so replay must not
        fill it faster than the client takes frames off."""
        deadline = time.monotonic() + STALL_TIMEOUT
        while _queued(self.sio, sid) > MAX_QUEUED_FRAMES:
            if time.monotonic() > deadline:
                raise ClientStalled(sid)
            await asyncio.sleep(0.005)


def _queued(sio: socketio.AsyncServer, sid: str) -> int:
    """Packets waiting in the client's Engine.IO queue (0 when it is gone)."""
    eio_sid = sio.manager.eio_sid_from_sid(sid, DASHBOARD)
    session = sio.eio.sockets.get(eio_sid) if eio_sid else None
    return int(session.queue.qsize()) if session is not None else 0
