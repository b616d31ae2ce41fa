"""Live delivery of committed readings to dashboards, coalesced per tick.

Each dashboard client sits in exactly one room, named after what it
subscribed to: `device:<id>` for one device, `*` for everything, `set:<hash>`
for several devices. Per tick, each room with members gets one `readings`
frame holding every new reading it wants, in ascending seq, encoded once by
python-socketio for all its members. One room per client is what lets a
client's cursor be "the highest seq I have seen": a client never gets two
frames of one tick, so it never sees seqs out of order.

`head` is the highest seq handed to the rooms; a client that joins a room
under the flush lock gets every reading after `head` and none before.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import socketio

from hub.metrics import Metrics
from hub.models import PresenceChange, Reading

log = logging.getLogger(__name__)

DASHBOARD = "/dashboard"
ALL = "*"


@dataclass(frozen=True, slots=True)
class Subscription:
    """What one dashboard client asked for: every device, or these."""

    everything: bool
    devices: frozenset[str]

    @classmethod
    def of(cls, selectors: Iterable[str]) -> Subscription:
        selectors = frozenset(selectors)
        if ALL in selectors:
            return cls(True, frozenset())
        return cls(False, selectors)

    def union(self, other: Subscription) -> Subscription:
        if self.everything or other.everything:
            return Subscription(True, frozenset())
        return Subscription(False, self.devices | other.devices)

    def minus(self, devices: Iterable[str]) -> Subscription:
        removed = frozenset(devices)
        if ALL in removed:
            return Subscription(False, frozenset())
        return Subscription(self.everything, self.devices - removed)

    def wants(self, device_id: str) -> bool:
        return self.everything or device_id in self.devices

    @property
    def room(self) -> str:
        if self.everything:
            return ALL
        if len(self.devices) == 1:
            return "device:" + next(iter(self.devices))
        digest = hashlib.sha1("\n".join(sorted(self.devices)).encode()).hexdigest()[:16]
        return "set:" + digest

    def to_wire(self) -> list[str]:
        return [ALL] if self.everything else sorted(self.devices)


class Broadcaster:
    def __init__(self, sio: socketio.AsyncServer, metrics: Metrics, *, tick: float = 0.02):
        self.sio = sio
        self.metrics = metrics
        self.tick = tick
        self.epoch = ""
        self.head = 0
        self.lock = asyncio.Lock()
        self._readings: list[Reading] = []
        self._presence: list[PresenceChange] = []
        self._wake = asyncio.Event()
        self._clients: dict[str, Subscription] = {}
        self._rooms: dict[str, Subscription] = {}
        self._members: dict[str, set[str]] = {}
        self._task: asyncio.Task[None] | None = None

    def start_at(self, epoch: str, head: int) -> None:
        self.epoch, self.head = epoch, head

    async def __aenter__(self) -> Broadcaster:
        self._task = asyncio.create_task(self._run(), name="broadcaster")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()

    @property
    def clients(self) -> int:
        return len(self._clients)

    def publish(self, readings: tuple[Reading, ...], presence: tuple[PresenceChange, ...]) -> None:
        """Called by the writer after each commit; sends nothing itself."""
        if readings:
            self._readings.extend(readings)
        if presence:
            self._presence.extend(presence)
        if readings or presence:
            self._wake.set()

    # -- subscriptions (callers hold `lock`) ---------------------------------

    def subscription(self, sid: str) -> Subscription | None:
        return self._clients.get(sid)

    async def place(self, sid: str, subscription: Subscription) -> None:
        """Move a client into the room of `subscription` (caller holds `lock`)."""
        await self.remove(sid)
        if not subscription.everything and not subscription.devices:
            return
        room = subscription.room
        self._clients[sid] = subscription
        self._rooms[room] = subscription
        self._members.setdefault(room, set()).add(sid)
        await self.sio.enter_room(sid, room, namespace=DASHBOARD)

    async def remove(self, sid: str) -> None:
        old = self._clients.pop(sid, None)
        if old is None:
            return
        room = old.room
        members = self._members.get(room)
        if members is not None:
            members.discard(sid)
            if not members:
                del self._members[room]
                del self._rooms[room]
        await self.sio.leave_room(sid, room, namespace=DASHBOARD)

    # -- delivery -----------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # a broken client must not stop delivery to the rest
                log.exception("broadcast flush failed")
            # At most one flush per tick: what arrives meanwhile shares the next frame.
            await asyncio.sleep(self.tick)

    async def flush(self) -> None:
        async with self.lock:
            readings, self._readings = self._readings, []
            presence, self._presence = self._presence, []
            if readings:
                self.head = readings[-1].seq
            for change in presence:
                rooms = [r for r, s in self._rooms.items() if s.wants(change.device_id)]
                if rooms:
                    await self.sio.emit("presence", change.to_wire(), to=rooms, namespace=DASHBOARD)
            if readings:
                await self._emit_readings(readings)

    async def _emit_readings(self, readings: list[Reading]) -> None:
        wire = [(r.device_id, r.to_wire()) for r in readings]
        for room, subscription in list(self._rooms.items()):
            if subscription.everything:
                frame = [w for _, w in wire]
            else:
                frame = [w for device_id, w in wire if device_id in subscription.devices]
            if not frame:
                continue
            await self.sio.emit("readings", self.frame(frame), to=room, namespace=DASHBOARD)
            self.metrics.inc("hub_broadcast_frames_total")
            self.metrics.inc("hub_broadcast_readings_total", len(frame))

    def frame(self, readings: list[dict[str, Any]], replay: bool = False) -> dict[str, Any]:
        return {"epoch": self.epoch, "readings": readings, "replay": replay}
