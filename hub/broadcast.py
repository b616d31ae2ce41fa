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

A client being replayed to is *held*: from the moment it subscribes, the
frames its subscription would receive are kept for it (references to the
same encoded frames its room gets, so a hold costs little), and handed to it
when its replay of history is done. So a client waiting for a replay slot
does not fall further behind, and nothing committed meanwhile is read again.
A hold keeps at most `hold_max` readings; past that it is dropped and the
client is told of a gap (reason `overflow`). Presence changes are not held:
a held client gets them when its room would.

A client that stops taking frames off its connection (a stalled tab, a
phone on a bad link) is not fed without bound: once more than `lag_max`
frames wait in its queue, it leaves its room; when its queue has drained, it
is handed to `resume` with the last seq it was sent, and replay brings it back
up to date from the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import socketio

from hub.metrics import Metrics
from hub.models import PresenceChange, Reading
from hub.polling import Engine
from hub.wire import encode, json_array

log = logging.getLogger(__name__)

# How often clients taken out for lagging are checked when nothing else wakes
# the broadcaster (seconds).
LAGGING_RECHECK = 0.1

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


@dataclass(slots=True)
class Hold:
    """Live readings kept for a client while its history is replayed: the
    encoded bodies of the frames its subscription got, shared with its room."""

    subscription: Subscription
    since: int  # what is kept (or lost to an overflow) comes after this seq
    bodies: list[tuple[bytes, int]] = field(default_factory=list)  # (body, readings)
    readings: int = 0
    kept_through: int = 0
    overflowed: bool = False

    def take(self) -> list[tuple[bytes, int]]:
        """What is kept so far; the hold goes on keeping what comes next."""
        bodies, self.bodies, self.readings = self.bodies, [], 0
        self.since = max(self.since, self.kept_through)
        return bodies


class Broadcaster:
    def __init__(
        self,
        sio: socketio.AsyncServer,
        metrics: Metrics,
        *,
        tick: float = 0.02,
        hold_max: int = 100_000,
        lag_max: int = 50,
        engine: Engine | None = None,
    ):
        self.sio = sio
        self.engine = engine or Engine(sio)
        self.metrics = metrics
        self.tick = tick
        self.hold_max = hold_max
        self.lag_max = lag_max
        # sid -> (subscription, last seq sent) of clients taken out for lagging
        self._lagging: dict[str, tuple[Subscription, int]] = {}
        # set by the replayer: catch a lagging client up (caller holds `lock`)
        self.resume: Callable[[str, Subscription, int], None] | None = None
        self.epoch = ""
        self.head = 0
        self.lock = asyncio.Lock()
        self._holds: dict[str, Hold] = {}
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

    # -- subscriptions and holds (callers hold `lock`) -----------------------

    def hold(self, sid: str, subscription: Subscription) -> int:
        """Start keeping the client's live frames; returns the seq they start after."""
        self._holds[sid] = Hold(subscription, self.head)
        return self.head

    def release(self, sid: str) -> Hold | None:
        return self._holds.pop(sid, None)

    def held(self, sid: str) -> Hold | None:
        return self._holds.get(sid)

    @property
    def holds(self) -> int:
        return len(self._holds)

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
        self._holds.pop(sid, None)
        self._lagging.pop(sid, None)
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
            if self._lagging:
                # A lagging client may drain while nothing new is committed:
                # look again soon rather than at the next reading.
                # (asyncio.timeout: wait_for can swallow a cancel on Python 3.11)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(LAGGING_RECHECK):
                        await self._wake.wait()
            else:
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
            # Before head moves on: a client resumed now is held from here, so
            # this flush's frames go to its hold and not also into its replay.
            await self._check_lagging(self.head)
            if readings:
                self.head = readings[-1].seq
            for change in presence:
                # A held client gets presence at once: it is the device's state
                # now, not part of the history being replayed to it.
                to = [r for r, s in self._rooms.items() if s.wants(change.device_id)]
                to += [
                    sid for sid, h in self._holds.items() if h.subscription.wants(change.device_id)
                ]
                if to:
                    await self.sio.emit("presence", change.to_wire(), to=to, namespace=DASHBOARD)
            if readings:
                await self._emit_readings(readings)

    @property
    def lagging(self) -> int:
        return len(self._lagging)

    async def _check_lagging(self, sent_through: int) -> None:
        """Take out clients with too much queued; resume those that drained."""
        for sid, subscription in list(self._clients.items()):
            if self.engine.queued(sid, DASHBOARD) > self.lag_max:
                await self.remove(sid)
                self._lagging[sid] = (subscription, sent_through)
                self.metrics.inc("hub_dashboards_lagging_total")
        for sid, (subscription, seq) in list(self._lagging.items()):
            if self.engine.queued(sid, DASHBOARD) <= self.lag_max // 10:
                del self._lagging[sid]
                if self.resume is not None:
                    self.resume(sid, subscription, seq)

    async def _emit_readings(self, readings: list[Reading]) -> None:
        # Each reading is encoded once, whatever the number of rooms it goes to,
        # and each subscription's frame is built once, for its room and holds.
        if not self._rooms and not self._holds:
            return  # nobody is watching: encode nothing
        wire = [(r.device_id, encode(r)) for r in readings]
        last = readings[-1].seq
        rooms = {subscription: room for room, subscription in self._rooms.items()}
        holds: dict[Subscription, list[Hold]] = {}
        for hold in self._holds.values():
            holds.setdefault(hold.subscription, []).append(hold)
        for subscription in rooms.keys() | holds.keys():
            if subscription.everything:
                encoded = [w for _, w in wire]
            else:
                encoded = [w for device_id, w in wire if device_id in subscription.devices]
            if not encoded:
                continue
            body = b",".join(encoded)
            for hold in holds.get(subscription, ()):
                self._keep(hold, body, len(encoded), last)
            room = rooms.get(subscription)
            if room is not None:
                frame = self.frame_of(body)
                await self.sio.emit("readings", frame, to=room, namespace=DASHBOARD)
                self.metrics.inc("hub_broadcast_frames_total")
                self.metrics.inc("hub_broadcast_readings_total", len(encoded))

    def _keep(self, hold: Hold, body: bytes, count: int, last: int) -> None:
        if hold.overflowed:
            return
        hold.kept_through = last
        if hold.readings + count > self.hold_max:
            hold.overflowed = True
            hold.bodies.clear()
            return
        hold.bodies.append((body, count))
        hold.readings += count

    def frame(self, encoded: list[bytes], replay: bool = False) -> dict[str, Any]:
        """A `readings` frame of readings encoded by `hub.wire.encode`."""
        return self.frame_of(b",".join(encoded), replay)

    def frame_of(self, body: bytes, replay: bool = False) -> dict[str, Any]:
        """A `readings` frame around encoded readings already joined by commas."""
        return {"epoch": self.epoch, "readings": json_array(body), "replay": replay}
