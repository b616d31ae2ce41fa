"""Cursor replay: a dashboard that comes back gets what it missed, then live.

python-socketio has no connection-state recovery, so the hub builds it on its
store. A client that connects with `auth.cursor = {"epoch", "seq"}` and then
subscribes is not put in its live room at once. Instead:

1. From that moment the live path *holds* the live frames the client's
   subscription gets (`hub.live`): the client's history ends at HEAD, the
   seq of that moment, however long it then waits.
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
4. The live path hands over the held frames and puts the client in its room:
   every seq after the cursor arrives exactly once, in order, and the next
   frame is live.

This module is step 2 and 3, the history; `hub.live` does 1 and 4.

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

from hub.config import ReplaySettings
from hub.metrics import Metrics
from hub.models import Reading
from hub.pacing import TokenBucket
from hub.polling import Engine
from hub.store.base import Store
from hub.wire import DASHBOARD, encode, frame

log = logging.getLogger(__name__)

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


class Replay:
    """Sends one client the history it missed, paced, on the store's reader."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        store: Store,
        settings: ReplaySettings,
        metrics: Metrics,
        engine: Engine | None = None,
    ) -> None:
        self.sio = sio
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.engine = engine or Engine(sio)
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self._hub_budget = TokenBucket(settings.hub_rate, settings.hub_rate / 10)
        self.active = 0

    async def send(
        self, sid: str, devices: frozenset[str] | None, cursor: Cursor, since: int
    ) -> None:
        """The readings of `devices` (None: all) after the cursor up to seq
        `since`, each exactly once, then `replay` end; or a `gap` for what
        cannot be sent (another epoch, too far behind, deleted, a stall)."""
        start = cursor.seq
        try:
            if cursor.epoch != self.store.epoch:
                await self.gap(sid, start, since, "epoch")
                return
            purged = self.store.purged_through
            if start < purged:
                await self.gap(sid, start, purged, "retention")
                start = purged
            if start >= since:
                return
            limit = self.settings.max_backlog
            count = await self.store.count_after(start, since, devices, limit + 1)
            if count > limit:
                await self.gap(sid, start, since, "backlog")
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
            await self._emit(
                "replay", {"state": "end", "from": start, "to": since, "count": sent}, sid
            )
            self.metrics.inc("hub_replays_total", outcome="complete")
        except ClientStalled as stalled:
            log.warning("replay to %s stopped at seq %d: the client stalled", sid, stalled.seq)
            self.metrics.inc("hub_replays_total", outcome="stalled")
            await self.gap(sid, stalled.seq, since, "overflow")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("replay to %s failed", sid)
            self.metrics.inc("hub_replays_total", outcome="failed")
            await self.gap(sid, start, since, "overflow")

    async def gap(self, sid: str, start: int, to: int, reason: str) -> None:
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
            await drained(self.engine, sid, after)
            await self._send(sid, rows)
            sent += len(rows)
            after = rows[-1].seq
        return sent

    async def _send(self, sid: str, rows: list[Reading]) -> None:
        body = encode(rows)
        await self._emit("readings", frame(self.store.epoch, body, replay=True), sid)
        self.metrics.inc("hub_replay_readings_total", len(rows))

    async def _emit(self, event: str, data: dict[str, Any], sid: str) -> None:
        await self.sio.emit(event, data, to=sid, namespace=DASHBOARD)


async def drained(engine: Engine, sid: str, seq: int) -> None:
    """Wait while the client has more than a few frames queued and unsent:
    python-engineio's per-client queue is unbounded, so replay must not fill
    it faster than the client takes frames off. `seq` is where the client
    is, for the `ClientStalled` raised after STALL_TIMEOUT."""
    deadline = time.monotonic() + STALL_TIMEOUT
    while engine.queued(sid, DASHBOARD) > MAX_QUEUED_FRAMES:
        if time.monotonic() > deadline:
            raise ClientStalled(sid, seq)
        await asyncio.sleep(0.005)
