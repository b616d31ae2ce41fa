"""The writer's group commit: when over half of a second goes into commits,
batches linger longer and grow; a quiet spell brings the short linger back."""

from __future__ import annotations

from hub.metrics import Metrics
from hub.presence import Presence
from hub.store.sqlite import SqliteStore
from hub.writer import Writer


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def writer(clock: Clock) -> Writer:
    # The store is never opened: these tests drive only the busy bookkeeping.
    return Writer(
        SqliteStore("unused.db"),
        Presence(60_000),
        lambda readings, presence: None,
        Metrics(),
        linger=0.002,
        linger_busy=0.02,
        monotonic=clock,
    )


def commits(w: Writer, clock: Clock, seconds: float, share: float, per_second: int = 50) -> None:
    """`per_second` commits a second, each taking `share` of its slot."""
    for _ in range(round(seconds * per_second)):
        clock.now += 1 / per_second
        w._count_busy(share / per_second)


def test_a_store_busy_half_the_time_makes_batches_linger_longer() -> None:
    clock = Clock()
    w = writer(clock)
    commits(w, clock, 2.0, share=0.3)
    assert not w.busy  # 30% of the time committing: prompt commits
    commits(w, clock, 1.1, share=0.6)
    assert w.busy
    # larger batches take a smaller share of the time: still busy
    commits(w, clock, 2.0, share=0.3)
    assert w.busy
    commits(w, clock, 1.1, share=0.1)
    assert not w.busy


def test_a_quiet_spell_ends_the_busy_spell_before_the_next_commit() -> None:
    clock = Clock()
    w = writer(clock)
    commits(w, clock, 1.1, share=0.9)
    assert w.busy
    clock.now += 5.0  # nothing arrives for 5 s
    w._count_busy(0.0)  # what the writer does when a submission arrives
    assert not w.busy
