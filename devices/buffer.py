"""Store-and-forward parts: the options and the bounded buffer (flush pacing
and backoff are `hub.pacing`'s, the same as the hub's).

These are plain values and data structures with no I/O, so they are tested
directly; `devices/forwarder.py` puts them to work for a `Device`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar, get_args

from devices.errors import SetupError

T = TypeVar("T")

DropPolicy = Literal["drop_oldest", "drop_newest"]
"""What a full buffer gives up: the oldest envelope it holds, or the new one."""

DROP_POLICIES: tuple[str, ...] = get_args(DropPolicy)


@dataclass(frozen=True, slots=True)
class Buffering:
    """How a `Device` keeps envelopes while it cannot deliver them.

    - `max_envelopes`: how many envelopes may wait; one more is a drop.
    - `policy`: `drop_oldest` keeps the freshest data (what a dashboard
      wants after an outage); `drop_newest` keeps the start of the outage.
    - `batch_size`: envelopes per flushed message (the contract's JSON array).
      Keep `batch_size` x envelope size under the hub's payload limit
      (`normalize.max_payload_bytes`, 64 KiB by default).
    - `flush_rate`: envelopes per second a flush may send, so that a fleet
      coming back at once does not flood the hub; `math.inf` for no limit.
    - `reconnect_min`/`reconnect_max`: bounds of the exponential backoff
      (with jitter) between attempts to reconnect or to resend.
    - `close_timeout`: how long `Device.close()` tries to deliver what is left.
    - `watch_interval`: how often an idle device checks that its link is up,
      so it reconnects even when it has nothing to send.
    """

    max_envelopes: int = 10_000
    policy: DropPolicy = "drop_oldest"
    batch_size: int = 100
    flush_rate: float = 100.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    close_timeout: float = 5.0
    watch_interval: float = 1.0

    def __post_init__(self) -> None:
        if self.max_envelopes < 1:
            raise SetupError("max_envelopes", self.max_envelopes, "must be 1 or more")
        if self.policy not in DROP_POLICIES:
            raise SetupError("policy", self.policy, f"must be one of {', '.join(DROP_POLICIES)}")
        if self.batch_size < 1:
            raise SetupError("batch_size", self.batch_size, "must be 1 or more")
        if not self.flush_rate > 0:  # also refuses NaN
            raise SetupError("flush_rate", self.flush_rate, "must be more than 0")
        if not 0 < self.reconnect_min <= self.reconnect_max < math.inf:
            raise SetupError(
                "reconnect_min",
                (self.reconnect_min, self.reconnect_max),
                "needs 0 < reconnect_min <= reconnect_max, both finite",
            )
        if not 0 <= self.close_timeout < math.inf:
            raise SetupError("close_timeout", self.close_timeout, "must be finite seconds, >= 0")
        if not 0 < self.watch_interval < math.inf:
            raise SetupError("watch_interval", self.watch_interval, "must be finite seconds, > 0")


@dataclass(frozen=True, slots=True)
class BufferStats:
    """A device's store-and-forward counts at one moment, in envelopes.

    - `buffered`: waiting in the buffer now, including a batch in flight.
    - `buffered_total`: ever put in the buffer (delivered later, dropped or unsent).
    - `dropped`: given up because the buffer was full (see `Buffering.policy`).
    - `flushed`: delivered from the buffer, in batches.
    - `resent`: sent again after a send whose outcome was unknown (`LinkError`)
      or that the hub asked to retry; the hub stores a repeat once.
    - `delivered`: delivered in all, directly or flushed.
    - `rejected`: refused for good by the hub, and so not kept.
    - `unsent`: still in the buffer when `close()` gave up.
    - `last_error`: the last failure to connect or send, if any.
    """

    buffered: int = 0
    buffered_total: int = 0
    dropped: int = 0
    flushed: int = 0
    resent: int = 0
    delivered: int = 0
    rejected: int = 0
    unsent: int = 0
    last_error: str | None = None


class Buffer(Generic[T]):
    """A bounded FIFO with a drop policy, counting what it drops.

    The bound holds for what waits here; a batch taken out to be sent is not
    counted until it comes back with `put_back()`, where the bound applies
    again. So memory stays within `limit + one batch`.
    """

    def __init__(self, limit: int, policy: DropPolicy = "drop_oldest") -> None:
        if limit < 1:
            raise SetupError("limit", limit, "must be 1 or more")
        self.limit = limit
        self.policy = policy
        self.dropped = 0
        self.added = 0
        self._items: deque[T] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def add(self, item: T) -> None:
        """Keep `item` as the newest; a full buffer drops one by its policy."""
        self.added += 1
        if len(self._items) < self.limit:
            self._items.append(item)
        elif self.policy == "drop_oldest":
            self._items.popleft()
            self._items.append(item)
            self.dropped += 1
        else:
            self.dropped += 1

    def take(self, count: int) -> list[T]:
        """Remove and return up to `count` of the oldest items, oldest first."""
        items = self._items
        return [items.popleft() for _ in range(min(count, len(items)))]

    def put_back(self, taken: Iterable[T]) -> None:
        """Return items from `take()` to the front, in their order, as undelivered.

        They are older than anything added since, so when the bound forces a
        drop, `drop_oldest` gives them up first and `drop_newest` the newest.
        """
        self._items.extendleft(reversed(list(taken)))
        excess = len(self._items) - self.limit
        if excess > 0:
            drop = self._items.popleft if self.policy == "drop_oldest" else self._items.pop
            for _ in range(excess):
                drop()
            self.dropped += excess
