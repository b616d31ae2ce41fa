"""Following the store's log: what each commit stored, in seq order, none
skipped, for the live path (`hub.live`).

A store hands every commit to its `Feed` (`Feed.committed`) once it is
durable, in commit order; followers (`Feed.follow`) take what came after
their position. The SQLite store calls `committed` in-process right after
each commit, so a follower wakes at once. A store shared by several writing
hubs implements the same thing by waking on a notification (PostgreSQL's
LISTEN/NOTIFY) and handing over what it reads of `seq > head`, in seq order.

Entries stay in memory until every follower has taken them, and at most
`keep` readings' worth: a follower that falls further behind than that reads
the readings it missed from the store (`read_back`), and loses the presence
changes among them (presence is a device's state; the next change or a page
load brings it back). So a stalled follower costs a bounded amount of memory.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hub.models import PresenceChange, Reading

KEEP_READINGS = 100_000  # readings kept for followers at most
READ_BACK_PAGE = 5_000  # readings per store query when a follower reads back

# (after, upto, limit) -> readings with after < seq <= upto, ascending
ReadBack = Callable[[int, int, int], Awaitable[list[Reading]]]


@dataclass(frozen=True, slots=True)
class Committed:
    """What one or more consecutive commits stored: the readings with seq in
    (`after`, `head`], ascending, and the presence changes committed with
    them, in order. `head == after` when they stored no reading."""

    after: int
    head: int
    readings: tuple[Reading, ...]
    presence: tuple[PresenceChange, ...]


def merged(entries: list[Committed]) -> Committed:
    """Consecutive entries as one."""
    if len(entries) == 1:
        return entries[0]
    return Committed(
        entries[0].after,
        entries[-1].head,
        tuple(r for e in entries for r in e.readings),
        tuple(p for e in entries for p in e.presence),
    )


class Feed:
    """The recent commits of one store, in order, for its followers."""

    def __init__(self, head: int = 0, keep: int = KEEP_READINGS):
        self.head = head
        self.keep = keep
        self.number = 0  # entries ever committed; an entry's number is its position
        self._entries: deque[Committed] = deque()
        self._kept = 0  # readings in _entries
        self._followers: weakref.WeakSet[Follower] = weakref.WeakSet()
        self._wake = asyncio.Event()

    def committed(self, entry: Committed) -> None:
        """A commit is durable; called in commit order."""
        if entry.after != self.head:
            raise ValueError(f"commit after {entry.after} follows head {self.head}")
        self.head = entry.head
        self.number += 1
        self._entries.append(entry)
        self._kept += len(entry.readings)
        self.trim()
        self._wake.set()

    def follow(self, after: int, read_back: ReadBack) -> Follower:
        """A follower that takes everything committed after seq `after`; what
        was committed before now is read from the store."""
        follower = Follower(self, after, self.number, read_back)
        self._followers.add(follower)
        return follower

    @property
    def kept(self) -> int:
        return self._kept

    def since(self, number: int) -> tuple[list[Committed], int]:
        """The entries kept after entry `number`, and the number of the entry
        before the oldest kept (when it is above `number`, some were trimmed)."""
        first = self.number - len(self._entries)
        start = max(number, first) - first
        return [self._entries[i] for i in range(start, len(self._entries))], first

    async def changed(self) -> None:
        """Until the next commit."""
        self._wake.clear()
        await self._wake.wait()

    def trim(self) -> None:
        """Let go of what every follower has taken, and of the oldest past `keep`."""
        lowest = min((f.number for f in self._followers), default=self.number)
        first = self.number - len(self._entries)
        while self._entries and (first < lowest or self._kept > self.keep):
            self._kept -= len(self._entries.popleft().readings)
            first += 1


class Follower:
    """One reader of a feed. `take` hands over what is new, `next` waits for it."""

    def __init__(self, feed: Feed, after: int, number: int, read_back: ReadBack):
        self.feed = feed
        self.position = after  # the last seq handed over
        self.number = number  # the last entry handed over
        self.read_back = read_back
        self.missed = 0  # times this follower fell behind the feed and read back

    async def next(self) -> Committed:
        """What was committed after the last call, waiting for a commit if
        there is nothing yet."""
        while True:
            taken = await self.take()
            if taken is not None:
                return taken
            await self.feed.changed()

    async def take(self) -> Committed | None:
        """What was committed after the last call, or None. Cancelled, it
        hands over nothing and keeps its position."""
        feed = self.feed
        position, number = self.position, self.number
        back: list[Reading] = []
        while True:
            entries, first = feed.since(number)
            upto = entries[0].after if entries else feed.head
            if position >= upto:
                break
            # Behind what the feed keeps (or started before it): the readings
            # in between come from the store, and the entries up to `first`
            # are covered by them.
            covered = max(number, first) if entries else feed.number
            if number < first:
                self.missed += 1
            back += await self._read(position, upto)
            position, number = upto, covered
        if back:
            entries.insert(0, Committed(self.position, position, tuple(back), ()))
        if not entries:
            self.position, self.number = position, number
            return None
        taken = merged(entries)
        self.position, self.number = taken.head, feed.number
        feed.trim()
        return taken

    async def _read(self, after: int, upto: int) -> tuple[Reading, ...]:
        readings: list[Reading] = []
        while after < upto:
            page = await self.read_back(after, upto, READ_BACK_PAGE)
            if not page:
                break
            readings += page
            after = page[-1].seq
        return tuple(readings)
