"""Cursor replay: a dashboard that comes back gets what it missed, then live.

python-socketio has no connection-state recovery, so the hub builds it on its
store. A client that connects with `auth.cursor = {"epoch", "seq"}` and then
subscribes is not put in its live room at once. Instead:

1. From that moment the broadcaster *holds* the live frames the client's
   subscription gets (`Broadcaster.hold`): the client's history ends at HEAD,
   the seq of that moment, however long it then waits.
2. A cursor of another epoch, or more than `replay.max_backlog` missed
   readings, are a `gap` (`epoch`, `backlog`); what retention deleted is a
   `gap` (`retention`) and the rest is replayed.
3. The replay waits for one of `replay.max_concurrent` slots (FIFO: a
   reconnect storm is served in arrival order), announces `replay` start,
   sends the history (cursor, HEAD] from the store in pages of
   `replay.page_size`, at most `replay.rate` readings/s per client (a token
   bucket holding `replay.burst`) and `replay.hub_rate` for all replays
   together, never more than a few frames ahead of what the client has taken
   off its connection, and announces `replay` end.
4. Holding the broadcaster's lock, it hands over the held frames and puts the
   client in its room: every seq after the cursor arrives exactly once, in
   order, and the next frame is live.

Replay reads use the store's reader connection, never the writer's, so they
do not delay commits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import socketio

from hub.broadcast import DASHBOARD, Broadcaster, Subscription
from hub.config import ReplaySettings
from hub.metrics import Metrics
from hub.models import Reading
from hub.pacing import TokenBucket
from hub.store.base import Store
from hub.wire import encode

log = logging.getLogger(__name__)

# Readings per frame when held live readings are handed over.
HELD_FRAME_READINGS = 5000
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


class ClientStalled(Exception):
    """The client took nothing off its connection for STALL_TIMEOUT."""

    def __init__(self, sid: str, seq: int):
        self.sid = sid
        self.seq = seq
        super().__init__(f"{sid} stalled at seq {seq}")


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
        self._hub_budget = TokenBucket(settings.hub_rate, settings.hub_rate / 10)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.active = 0

    @property
    def queued(self) -> int:
        return len(self._tasks) - self.active

    def resume(self, sid: str, subscription: Subscription, seq: int) -> None:
        """Catch up a client the broadcaster took out for lagging (caller holds
        the broadcaster's lock)."""
        self.start(sid, subscription, Cursor(self.store.epoch, seq))

    def start(self, sid: str, subscription: Subscription, cursor: Cursor) -> None:
        """Hold the client's live frames and schedule its replay (caller holds
        the broadcaster's lock)."""
        since = self.broadcaster.hold(sid, subscription)
        task = asyncio.create_task(
            self._run(sid, subscription, cursor, since), name=f"replay-{sid}"
        )
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

    async def _run(self, sid: str, subscription: Subscription, cursor: Cursor, since: int) -> None:
        devices = None if subscription.everything else subscription.devices
        start = cursor.seq
        try:
            if cursor.epoch != self.store.epoch:
                await self._go_live(sid, subscription, gap=(start, since, "epoch"))
                return
            purged = self.store.purged_through
            if start < purged:
                await self._gap(sid, start, purged, "retention")
                start = purged
            if start >= since:
                await self._go_live(sid, subscription)
                return
            limit = self.settings.max_backlog
            count = await self.store.count_after(start, since, devices, limit + 1)
            if count > limit:
                await self._go_live(sid, subscription, gap=(start, since, "backlog"))
                return
            async with self._slots:
                self.active += 1
                try:
                    await self._emit(
                        "replay",
                        {"state": "start", "from": start, "to": since, "count": count},
                        sid,
                    )
                    page = min(self.settings.page_size, self.settings.burst)
                    bucket = TokenBucket(self.settings.rate, self.settings.burst)
                    sent = await self._pump(sid, start, since, devices, page, bucket)
                finally:
                    self.active -= 1
            await self._go_live(sid, subscription, ended=(start, since, sent))
            self.metrics.inc("hub_replays_total", outcome="complete")
        except ClientStalled as stalled:
            log.warning("replay to %s stopped at seq %d: the client stalled", sid, stalled.seq)
            self.metrics.inc("hub_replays_total", outcome="stalled")
            await self._go_live(sid, subscription, gap=(stalled.seq, since, "overflow"))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("replay to %s failed", sid)
            self.metrics.inc("hub_replays_total", outcome="failed")
            await self._go_live(sid, subscription, gap=(start, since, "overflow"))

    async def _go_live(
        self,
        sid: str,
        subscription: Subscription,
        *,
        gap: tuple[int, int, str] | None = None,
        ended: tuple[int, int, int] | None = None,
    ) -> None:
        """Say what was not sent (`gap`) or that the replay is over (`ended`:
        from, to, count), hand over the held frames and join the live room.
        Most of what was held goes out before taking the broadcaster's lock
        (the hold keeps filling meanwhile, in order); the last of it goes out
        under the lock, with the move into the room, so that no live frame
        slips between and the lock is held briefly."""
        if gap is not None:
            await self._gap(sid, *gap)
        if ended is not None:
            start, to, count = ended
            await self._emit(
                "replay", {"state": "end", "from": start, "to": to, "count": count}, sid
            )
        hold = self.broadcaster.held(sid)
        while hold is not None and not hold.overflowed and hold.readings > HELD_FRAME_READINGS:
            for body in _chunks(hold.take(), HELD_FRAME_READINGS):
                await self._drained(sid, hold.since)
                await self._emit("readings", self.broadcaster.frame_of(body), sid)
        async with self.broadcaster.lock:
            hold = self.broadcaster.release(sid)
            if hold is not None and hold.overflowed:
                await self._gap(sid, hold.since, self.broadcaster.head, "overflow")
            elif hold is not None:
                # What arrived during the replay, in as few frames as sensible.
                for body in _chunks(hold.bodies, HELD_FRAME_READINGS):
                    await self._emit("readings", self.broadcaster.frame_of(body), sid)
            await self.broadcaster.place(sid, subscription)

    async def _gap(self, sid: str, start: int, to: int, reason: str) -> None:
        await self._emit("gap", {"from": start, "to": to, "reason": reason}, sid)
        self.metrics.inc("hub_replay_gaps_total", reason=reason)

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
            # The hub-wide budget: however many replays run, together they
            # leave the event loop time for live traffic.
            await self._hub_budget.take(len(rows))
            await self._drained(sid, after)
            await self._send(sid, rows)
            sent += len(rows)
            after = rows[-1].seq
        return sent

    async def _send(self, sid: str, rows: list[Reading]) -> None:
        frame = self.broadcaster.frame([encode(r) for r in rows], replay=True)
        await self._emit("readings", frame, sid)
        self.metrics.inc("hub_replay_readings_total", len(rows))

    async def _emit(self, event: str, data: dict[str, Any], sid: str) -> None:
        await self.sio.emit(event, data, to=sid, namespace=DASHBOARD)

    async def _drained(self, sid: str, seq: int) -> None:
        """Wait while the client has more than a few frames queued and unsent:
        python-engineio's per-client queue is unbounded, so replay must not
        fill it faster than the client takes frames off."""
        deadline = time.monotonic() + STALL_TIMEOUT
        while self.broadcaster.engine.queued(sid, DASHBOARD) > MAX_QUEUED_FRAMES:
            if time.monotonic() > deadline:
                raise ClientStalled(sid, seq)
            await asyncio.sleep(0.005)


def _chunks(bodies: list[tuple[bytes, int]], size: int) -> list[bytes]:
    """Join frame bodies into runs of about `size` readings (frames stay whole)."""
    chunks: list[bytes] = []
    run: list[bytes] = []
    count = 0
    for body, readings in bodies:
        run.append(body)
        count += readings
        if count >= size:
            chunks.append(b",".join(run))
            run, count = [], 0
    if run:
        chunks.append(b",".join(run))
    return chunks
