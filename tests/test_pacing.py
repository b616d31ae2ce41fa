"""Token buckets and backoff, the one implementation of each that the hub's
rate limits, replays, broker reconnects, commit retries and the device
library's buffer flushes share."""

from __future__ import annotations

import asyncio
import math
import random
import time

import pytest

from hub.pacing import TokenBucket, backoff_delay, refill

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_starts_full_then_refills_at_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(10.0, 3.0, clock=clock)
    assert [bucket.wait_for() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.wait_for() == pytest.approx(0.1)  # empty: a token per 0.1 s
    clock.now += 0.25
    assert bucket.wait_for(2) == 0.0
    assert bucket.wait_for() == pytest.approx(0.05)
    clock.now += 60
    assert bucket.wait_for(3) == 0.0  # never more than the burst saved up
    assert bucket.wait_for() > 0


def test_refill_is_the_arithmetic_of_every_bucket() -> None:
    assert refill(0.0, 10.0, 10.5, 4.0, 100.0) == 2.0
    assert refill(99.0, 10.0, 20.0, 4.0, 100.0) == 100.0


@pytest.mark.parametrize(("rate", "batch"), [(1000.0, 50), (400.0, 40)])
async def test_taking_holds_the_rate(rate: float, batch: int) -> None:
    bucket = TokenBucket(rate, batch)
    loop = asyncio.get_running_loop()
    items = 400
    start = loop.time()
    for _ in range(items // batch):
        await bucket.take(batch)
    elapsed = loop.time() - start
    # The first batch goes at once (the bucket starts full), the rest at the
    # rate: never faster. Slower only by the event loop's lateness, which the
    # bucket credits back up to one batch per wait, so a loaded machine
    # stretches it a little.
    expected = (items - batch) / rate
    assert expected * 0.97 <= elapsed <= expected * 1.25 + 0.05


async def test_an_unlimited_bucket_never_waits() -> None:
    bucket = TokenBucket(math.inf, 10)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(1000):
        await bucket.take(10)
    assert loop.time() - start < 0.05


def test_backoff_doubles_up_to_the_cap_with_half_of_each_delay_random() -> None:
    rng = random.Random(7)
    for attempt, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]):
        delays = [backoff_delay(attempt, 0.5, 30.0, rng) for _ in range(200)]
        assert ceiling / 2 <= min(delays) <= max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 4  # not in lockstep
    assert backoff_delay(10_000, 0.1, 1.0, rng) <= 1.0  # no overflow after a long outage


def test_a_thousand_clients_that_lost_their_peer_together_spread_out() -> None:
    rng = random.Random(1)
    delays = sorted(backoff_delay(5, 0.5, 30.0, rng) for _ in range(1000))
    assert delays[0] >= 8.0
    assert delays[-1] <= 16.0
    # no more than 5% of them within any 100 ms
    window = max(sum(1 for d in delays if start <= d < start + 0.1) for start in delays)
    assert window <= 50


async def test_takers_sharing_a_bucket_get_its_rate_between_them() -> None:
    # Every replay takes from the hub's bucket. Each taker asks again after
    # its sleep, so the bucket's clock never runs ahead of time (it did: each
    # waiter booked its own wait on top of the others', and replays starved).
    bucket = TokenBucket(4000.0, 20.0)
    taken: list[int] = []

    async def taker(n: int) -> None:
        for _ in range(5):
            await bucket.take(20)
            taken.append(n)

    await asyncio.gather(*(taker(n) for n in range(4)))
    assert sorted(taken) == sorted(list(range(4)) * 5)
    assert bucket.stamp <= time.monotonic()
    assert bucket.tokens >= 0
