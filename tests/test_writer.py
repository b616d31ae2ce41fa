"""The writer's group commit: batches linger `commit_linger`, or
`commit_linger_busy` while devices send fast enough that their messages
would share a commit (and the pages it writes)."""

from __future__ import annotations

from hub.writer import PACE_DEVICES_MAX, DevicePace

LINGER_BUSY = 0.02  # s: sharing from 50 messages per second per device


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def second(pace: DevicePace, clock: Clock, rates: dict[str, int]) -> None:
    """One second of messages, at `rates` per device, in 100 steps."""
    for step in range(100):
        clock.now += 0.01
        due = {d: rate * (step + 1) // 100 - rate * step // 100 for d, rate in rates.items()}
        pace.count([d for d, n in due.items() for _ in range(n)])


def test_devices_sending_100_a_second_are_busy() -> None:
    clock = Clock()
    pace = DevicePace(LINGER_BUSY, clock)
    second(pace, clock, {f"d{n}": 100 for n in range(20)})
    second(pace, clock, {f"d{n}": 100 for n in range(20)})
    assert pace.busy
    assert abs(pace.sharing - 2.0) < 0.1  # each message finds two of its device's in 20 ms


def test_devices_sending_20_a_second_are_not_busy_however_many() -> None:
    clock = Clock()
    pace = DevicePace(LINGER_BUSY, clock)
    rates = {f"d{n}": 20 for n in range(500)}  # 10,000 messages a second in all
    second(pace, clock, rates)
    second(pace, clock, rates)
    assert not pace.busy
    assert abs(pace.sharing - 0.4) < 0.05


def test_a_quiet_spell_ends_the_busy_spell() -> None:
    clock = Clock()
    pace = DevicePace(LINGER_BUSY, clock)
    second(pace, clock, {"d1": 500})
    second(pace, clock, {"d1": 500})
    assert pace.busy
    clock.now += 2.5  # nothing for 2.5 s
    assert not pace.busy


def test_too_many_devices_to_count_are_not_busy() -> None:
    clock = Clock()
    pace = DevicePace(LINGER_BUSY, clock)
    pace.count([f"d{n}" for n in range(PACE_DEVICES_MAX + 1)] * 3)
    clock.now += 1.0
    pace.count(["d0"])
    assert not pace.busy
