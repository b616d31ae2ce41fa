"""Live delivery: committed readings, from the store's log to dashboards.

`Live` follows the store's log (`Store.follow`: every commit, in seq order,
none skipped) and owns everything between it and the dashboards: rooms, the
holds of clients being replayed to, the handover from replay to live, the
lag policy and presence fan-out. Its lock is its own; the dashboard
namespace calls `subscribe`, `unsubscribe` and `drop`.

Rooms. Each dashboard client sits in exactly one room, named after what it
subscribed to: `device:<id>` for one device, `*` for everything, `set:<hash>`
for several devices. Each flush gives each room with members one `readings`
frame holding every new reading it wants, in ascending seq, encoded once by
python-socketio for all its members. One room per client is what lets a
client's cursor be "the highest seq I have seen": a client never gets two
frames of one flush, so it never sees seqs out of order.

`head` is the log position flushed to the rooms; a client that joins a room
gets every reading after `head` and none before.

Flushes. A commit leaves for the dashboards at once when the last flush
ended long enough ago, else it waits for that moment and shares its frame
with whatever comes meanwhile. "Long enough" is `clients / frame_rate`
seconds (frames the hub aims to send per second, in all), at most `tick`:
ten dashboards at 5,000 frames/s get a flush every 2 ms at most, a hundred
every 20 ms. So a quiet hub delivers without waiting, and a busy one
coalesces.

Replay handover. A client that subscribes with a cursor is *held*: from that
moment the frames its subscription would receive are kept for it
(references to the encoded frames its room gets), while `hub.replay` sends
its history up to `head` of that moment. Then the held frames go out and
the client joins its room, under the lock: every seq after the cursor
arrives exactly once, in order. A hold keeps at most `hold_max` readings;
past that it is dropped and the client is told of a gap (`overflow`).
Presence changes are not held: a held client gets them when its room would.

Presence. Changes go out at most `presence_rate` a second, for all
dashboards together, oldest first, and a change waiting for its turn is
replaced by the same device's next one (the device's state now is what a
dashboard shows). A broker restart that takes 100,000 devices offline at
once so reaches the dashboards over 100,000 / `presence_rate` seconds,
between the readings' frames, which keep flowing, rather than as one burst
that holds the event loop (and so ingest) for seconds.

Lag. A client that stops taking frames off its connection (a stalled tab, a
phone on a bad link) is not fed without bound: once more than `lag_max`
frames wait in its queue it leaves its room; when its queue has drained it
is caught up from the store like a reconnecting client.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType

import socketio

from hub.metrics import Metrics
from hub.models import PresenceChange, Reading
from hub.replay import ClientStalled, Cursor, Replay, drained
from hub.store.base import Store
from hub.store.feed import Committed, Follower, merged
from hub.wire import DASHBOARD, encode, frame

log = logging.getLogger(__name__)

# Readings per frame when held live readings are handed over.
HELD_FRAME_READINGS = 5000

# How often clients taken out for lagging are checked when no commit wakes
# the live path (seconds).
PRESENCE_RECHECK = 0.02  # seconds between flushes while presence waits its turn
PRESENCE_BURST = 0.1  # seconds of presence_rate one flush may send at most
LAGGING_RECHECK = 0.1

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
    def empty(self) -> bool:
        return not self.everything and not self.devices

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


class Live:
    def __init__(
        self,
        sio: socketio.AsyncServer,
        store: Store,
        replay: Replay,
        metrics: Metrics,
        *,
        tick: float = 0.02,
        frame_rate: float = 5000.0,
        hold_max: int = 100_000,
        lag_max: int = 50,
        presence_rate: float = 5000.0,
    ):
        self.sio = sio
        self.store = store
        self.replay = replay
        self.metrics = metrics
        self.engine = replay.engine  # one view of python-engineio's queues
        self.tick = tick
        self.frame_rate = frame_rate
        self.hold_max = hold_max
        self.lag_max = lag_max
        self.epoch = ""
        self.head = 0
        self._lock = asyncio.Lock()
        self._clients: dict[str, Subscription] = {}
        self._rooms: dict[str, Subscription] = {}
        self._members: dict[str, set[str]] = {}
        self._holds: dict[str, Hold] = {}
        # sid -> (subscription, last seq sent) of clients taken out for lagging
        self._lagging: dict[str, tuple[Subscription, int]] = {}
        self._replays: dict[str, asyncio.Task[None]] = {}
        self._follower: Follower | None = None
        self._flushed = -1.0  # loop time of the last flush
        self._task: asyncio.Task[None] | None = None
        self.presence_rate = presence_rate
        # device id -> its latest change not yet sent, oldest first
        self._presence: OrderedDict[str, PresenceChange] = OrderedDict()
        self._presence_credit = 0.0
        self._presence_at = 0.0  # loop time the credit was last topped up

    async def __aenter__(self) -> Live:
        self.epoch, self.head = self.store.epoch, self.store.head
        self._follower = self.store.follow(self.head)
        self._task = asyncio.create_task(self._run(), name="live")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Send what is committed, then stop following (replays end first)."""
        replays = list(self._replays.values())
        for task in replays:
            task.cancel()
        await asyncio.gather(*replays, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._follower is not None:
            await self._flush(await self._follower.take())

    # -- what the dashboard namespace calls ---------------------------------

    async def subscribe(
        self, sid: str, wanted: Subscription, cursor: Cursor | None = None
    ) -> tuple[Subscription, int]:
        """Add `wanted` to what the client has; with a cursor, replay what it
        missed first. Returns the subscription and the head it starts after."""
        await self.replay_over(sid)
        async with self._lock:
            subscription = (self._clients.get(sid) or Subscription.of(())).union(wanted)
            if cursor is None:
                await self._place(sid, subscription)
            else:
                self._start_replay(sid, subscription, cursor)
            return subscription, self.head

    async def unsubscribe(self, sid: str, devices: Iterable[str]) -> tuple[Subscription, int]:
        await self.replay_over(sid)
        async with self._lock:
            subscription = (self._clients.get(sid) or Subscription.of(())).minus(devices)
            await self._place(sid, subscription)
            return subscription, self.head

    async def drop(self, sid: str) -> None:
        """The client is gone."""
        task = self._replays.pop(sid, None)
        if task is not None:
            task.cancel()
        async with self._lock:
            await self._remove(sid)

    async def replay_over(self, sid: str) -> None:
        """Until the client's replay (if any) is over."""
        task = self._replays.get(sid)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    @property
    def clients(self) -> int:
        return len(self._clients)

    @property
    def holds(self) -> int:
        return len(self._holds)

    @property
    def lagging(self) -> int:
        return len(self._lagging)

    @property
    def replays(self) -> int:
        """Replays running or waiting for a slot."""
        return len(self._replays)

    # -- rooms (under the lock) ---------------------------------------------

    async def _place(self, sid: str, subscription: Subscription) -> None:
        """Move a client into the room of `subscription`."""
        await self._remove(sid)
        if subscription.empty:
            return
        room = subscription.room
        self._clients[sid] = subscription
        self._rooms[room] = subscription
        self._members.setdefault(room, set()).add(sid)
        await self.sio.enter_room(sid, room, namespace=DASHBOARD)

    async def _remove(self, sid: str) -> None:
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

    # -- replay handover ----------------------------------------------------

    def _start_replay(self, sid: str, subscription: Subscription, cursor: Cursor) -> None:
        """Hold the client's live frames from `head` on, and replay up to it."""
        self._holds[sid] = Hold(subscription, self.head)
        task = asyncio.create_task(
            self._catch_up(sid, subscription, cursor, self.head), name=f"replay-{sid}"
        )
        self._replays[sid] = task
        task.add_done_callback(
            lambda done: self._replays.pop(sid, None) if self._replays.get(sid) is done else None
        )

    async def _catch_up(
        self, sid: str, subscription: Subscription, cursor: Cursor, since: int
    ) -> None:
        devices = None if subscription.everything else subscription.devices
        await self.replay.send(sid, devices, cursor, since)
        await self._go_live(sid, subscription)

    async def _go_live(self, sid: str, subscription: Subscription) -> None:
        """Hand over the held frames and join the live room. Most of what was
        held goes out before taking the lock (the hold keeps filling
        meanwhile, in order); the last of it goes out under the lock, with the
        move into the room, so that no live frame slips between and the lock
        is held briefly."""
        hold = self._holds.get(sid)
        try:
            while hold is not None and not hold.overflowed and hold.readings > HELD_FRAME_READINGS:
                for body in chunks(hold.take(), HELD_FRAME_READINGS):
                    await drained(self.engine, sid, hold.since)
                    await self._emit("readings", frame(self.epoch, body), sid)
        except ClientStalled:
            log.warning("%s stalled while its held frames were sent", sid)
            if hold is not None:
                hold.overflowed = True
        async with self._lock:
            hold = self._holds.pop(sid, None)
            if hold is not None and hold.overflowed:
                await self.replay.gap(sid, hold.since, self.head, "overflow")
            elif hold is not None:
                # What arrived during the replay, in as few frames as sensible.
                for body in chunks(hold.bodies, HELD_FRAME_READINGS):
                    await self._emit("readings", frame(self.epoch, body), sid)
            await self._place(sid, subscription)

    # -- delivery -----------------------------------------------------------

    async def _run(self) -> None:
        assert self._follower is not None
        follower = self._follower
        loop = asyncio.get_running_loop()
        while True:
            entry: Committed | None = None
            # A lagging client may drain while nothing new is committed: look
            # again soon rather than at the next commit. (asyncio.timeout:
            # wait_for can swallow a cancel on Python 3.11)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._recheck()):
                    entry = await follower.next()
            if entry is not None:
                wait = self._flushed + self.interval() - loop.time()
                if wait > 0:  # what comes meanwhile shares the frames
                    await asyncio.sleep(wait)
                    more = await follower.take()
                    if more is not None:
                        entry = merged([entry, more])
            try:
                await self._flush(entry)
            except Exception:  # a broken client must not stop delivery to the rest
                log.exception("live flush failed")
            if entry is not None:
                # from the end of a flush: a flush that takes long (many
                # clients, a loaded machine) spaces the next one out as well
                self._flushed = loop.time()

    def _recheck(self) -> float | None:
        """How long to wait for a commit before flushing anyway: soon while
        presence waits its turn or a lagging client may have drained."""
        if self._presence:
            return PRESENCE_RECHECK
        return LAGGING_RECHECK if self._lagging else None

    @property
    def presence_waiting(self) -> int:
        """Presence changes not yet sent."""
        return len(self._presence)

    def interval(self) -> float:
        """Seconds from one flush to the next at least."""
        if not self.frame_rate:
            return self.tick
        return min(self.tick, len(self._clients) / self.frame_rate)

    async def _flush(self, entry: Committed | None) -> None:
        async with self._lock:
            # Before head moves on: a client resumed now is held from here, so
            # this flush's frames go to its hold and not also into its replay.
            await self._check_lagging()
            if entry is not None:
                self.head = entry.head
                for change in entry.presence:
                    self._presence.pop(change.device_id, None)
                    self._presence[change.device_id] = change
            await self._send_presence()
            if entry is not None and entry.readings:
                await self._emit_readings(entry.readings, entry.head)

    async def _send_presence(self) -> None:
        """The oldest waiting presence changes, as many as the rate allows."""
        if not self._presence:
            return
        now = asyncio.get_running_loop().time()
        burst = max(1.0, self.presence_rate * PRESENCE_BURST)
        elapsed = now - self._presence_at if self._presence_at else PRESENCE_BURST
        self._presence_at = now
        self._presence_credit = min(burst, self._presence_credit + elapsed * self.presence_rate)
        count = min(len(self._presence), int(self._presence_credit))
        self._presence_credit -= count
        for _ in range(count):
            _, change = self._presence.popitem(last=False)
            await self._emit_presence(change)
            self.metrics.inc("hub_presence_sent_total")

    async def _emit_presence(self, change: PresenceChange) -> None:
        # A held client gets presence at once: it is the device's state now,
        # not part of the history being replayed to it.
        to = [r for r, s in self._rooms.items() if s.wants(change.device_id)]
        to += [sid for sid, h in self._holds.items() if h.subscription.wants(change.device_id)]
        if to:
            await self.sio.emit("presence", change.to_wire(), to=to, namespace=DASHBOARD)

    async def _check_lagging(self) -> None:
        """Take out clients with too much queued; catch up those that drained."""
        for sid, subscription in list(self._clients.items()):
            if self.engine.queued(sid, DASHBOARD) > self.lag_max:
                await self._remove(sid)
                self._lagging[sid] = (subscription, self.head)
                self.metrics.inc("hub_dashboards_lagging_total")
        for sid, (subscription, seq) in list(self._lagging.items()):
            if self.engine.queued(sid, DASHBOARD) <= self.lag_max // 10:
                del self._lagging[sid]
                self._start_replay(sid, subscription, Cursor(self.epoch, seq))

    async def _emit_readings(self, readings: tuple[Reading, ...], head: int) -> None:
        # Each subscription's frame is encoded once, for its room and holds
        # (in one orjson call: `hub.wire.encode`).
        if not self._rooms and not self._holds:
            return  # nobody is watching: encode nothing
        rooms = {subscription: room for room, subscription in self._rooms.items()}
        holds: dict[Subscription, list[Hold]] = {}
        for hold in self._holds.values():
            holds.setdefault(hold.subscription, []).append(hold)
        for subscription in rooms.keys() | holds.keys():
            wanted: tuple[Reading, ...] | list[Reading] = readings
            if not subscription.everything:
                wanted = [r for r in readings if r.device_id in subscription.devices]
            if not wanted:
                continue
            body, count = encode(wanted), len(wanted)
            for hold in holds.get(subscription, ()):
                self._keep(hold, body, count, head)
            room = rooms.get(subscription)
            if room is not None:
                await self.sio.emit(
                    "readings", frame(self.epoch, body), to=room, namespace=DASHBOARD
                )
                self.metrics.inc("hub_broadcast_frames_total")
                self.metrics.inc("hub_broadcast_readings_total", count)

    def _keep(self, hold: Hold, body: bytes, count: int, head: int) -> None:
        if hold.overflowed:
            return
        hold.kept_through = head
        if hold.readings + count > self.hold_max:
            hold.overflowed = True
            hold.bodies.clear()
            return
        hold.bodies.append((body, count))
        hold.readings += count

    async def _emit(self, event: str, data: object, sid: str) -> None:
        await self.sio.emit(event, data, to=sid, namespace=DASHBOARD)


def chunks(bodies: list[tuple[bytes, int]], size: int) -> list[bytes]:
    """Join frame bodies into runs of about `size` readings (frames stay whole)."""
    joined: list[bytes] = []
    run: list[bytes] = []
    count = 0
    for body, readings in bodies:
        run.append(body)
        count += readings
        if count >= size:
            joined.append(b",".join(run))
            run, count = [], 0
    if run:
        joined.append(b",".join(run))
    return joined
