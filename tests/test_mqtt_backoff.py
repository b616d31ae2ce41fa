"""Reconnect delays: exponential, capped, jittered."""

from __future__ import annotations

import random

from hub.mqtt import backoff_delay


def test_delays_double_up_to_the_cap_with_half_of_each_random() -> None:
    rng = random.Random(7)
    for attempt, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]):
        delays = [backoff_delay(attempt, 0.5, 30.0, rng) for _ in range(200)]
        assert min(delays) >= ceiling / 2
        assert max(delays) <= ceiling
        # jitter: not lockstep
        assert max(delays) - min(delays) > ceiling / 4


def test_a_thousand_hubs_restarted_together_spread_out() -> None:
    rng = random.Random(1)
    delays = sorted(backoff_delay(5, 0.5, 30.0, rng) for _ in range(1000))
    assert delays[0] >= 8.0
    assert delays[-1] <= 16.0
    # no more than 5% of them within any 100 ms
    window = max(sum(1 for d in delays if start <= d < start + 0.1) for start in delays)
    assert window <= 50
