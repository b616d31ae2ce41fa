"""Rates and retries, one of each for the hub and the device library: the
token bucket (per-device rate limits, replay pacing, flushing a device's
buffer) and exponential backoff with jitter (reconnecting to the broker,
retrying a failed commit, a device reconnecting to the hub)."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable


def refill(tokens: float, then: float, now: float, rate: float, burst: float) -> float:
    """The tokens of a bucket that held `tokens` at `then`, at `now`: `rate`
    a second more, at most `burst`. Kept as a function over two numbers so
    that a table of many buckets (one per device) holds just those two."""
    return min(burst, tokens + (now - then) * rate)


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; it starts full, so
    the first `burst` go at once and the rest at the rate."""

    def __init__(
        self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.stamp = clock()

    def wait_for(self, count: float = 1.0) -> float:
        """Take `count` tokens if they are there (0.0), else take none and say
        how many seconds until they would be."""
        now = self.clock()
        self.tokens = refill(self.tokens, self.stamp, now, self.rate, self.burst)
        self.stamp = now
        if self.tokens >= count:
            self.tokens -= count
            return 0.0
        return (count - self.tokens) / self.rate

    async def take(self, count: float) -> None:
        """Wait until `count` tokens (at most `burst`) are there, and spend
        them. An infinite rate never waits."""
        if math.isinf(self.rate):
            return
        count = min(count, self.burst)
        # Asked again after each sleep: takers that share the bucket (every
        # replay shares the hub's) each see what the others took meanwhile.
        while (wait := self.wait_for(count)) > 0:  # noqa: ASYNC110 (time is the event)
            await asyncio.sleep(wait)


def backoff_delay(attempt: int, low: float, high: float, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": `low` doubling per attempt up
    to `high`, half of it fixed and half random, so that clients that lost
    their peer together do not all come back at the same moment."""
    ceiling = min(high, low * 2.0 ** min(attempt, 64))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)
