"""Per-device message rate limits: a token bucket per device id.

A device may send `rate` messages per second on average, `burst` at once,
whatever the path (MQTT, Socket.IO, HTTP). The buckets live in a bounded
table (least recently used evicted), so a flood of made-up device ids cannot
grow memory without bound; an evicted device simply starts with a full bucket.
A bucket that has filled up again is forgotten too, the least recently used
one looked at on each call: a full bucket is what a device starts with, so
only devices heard from within `burst / rate` seconds (2 s by default) keep
a bucket, not every device of a large idle fleet.
Each bucket is two numbers (its tokens and when they were counted), refilled
by `hub.pacing.refill`, the arithmetic of every token bucket in the hub.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from hub.pacing import refill

MAX_TRACKED = 100_000


class RateLimiter:
    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_tracked = max_tracked
        # device id -> (tokens, when they were counted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def allow(self, key: str, cost: float = 1.0) -> float:
        """0 when the message may pass (and pays for it); otherwise the
        seconds until it would."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        tokens, then = self._buckets.pop(key, (self.burst, now))
        tokens = refill(tokens, then, now, self.rate, self.burst)
        wait = 0.0
        if tokens >= cost:
            tokens -= cost
        else:
            wait = (cost - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_tracked:
            self._buckets.popitem(last=False)
        self._forget_full(now)
        return wait

    def _forget_full(self, now: float) -> None:
        """Drop the least recently used buckets that are full again (two at
        most: a call's own cost, and a little more, so the table shrinks)."""
        for _ in range(2):
            oldest = next(iter(self._buckets.items()), None)
            if oldest is None:
                return
            key, (tokens, then) = oldest
            if refill(tokens, then, now, self.rate, self.burst) < self.burst:
                return
            del self._buckets[key]

    def __len__(self) -> int:
        """Devices whose bucket is not full."""
        return len(self._buckets)
