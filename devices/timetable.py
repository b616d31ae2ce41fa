"""When a simulated device sends, and the `set_rate` command that changes it.

A device sends on a fixed timetable, message k due at `anchor + k * period`,
so sleeping late never accumulates into drift. `set_rate` starts a new
timetable from the moment it is set, and wakes a device that is waiting for
its next slot at the old rate.
"""

from __future__ import annotations

import asyncio
from typing import Any

from devices.commands import Commands

# The highest rate `set_rate` accepts, in messages per second per device.
# (Above 1000 a device's seqs may repeat across a restart: see Device.)
MAX_RATE = 10_000.0


class Timetable:
    """One device's timetable: `due` is when the next message should go."""

    def __init__(self, rate: float) -> None:
        # Not checked against MAX_RATE: the command line may ask for more
        # than a command may (benchmarks do); it has checked rate > 0.
        self.rate = rate
        self._period = 1.0 / rate
        self._anchor = 0.0
        self._k = 0
        self._nap: asyncio.Future[bool] | None = None

    @property
    def due(self) -> float:
        """The loop time the next message is due at."""
        return self._anchor + self._k * self._period

    def start(self, first_due: float) -> None:
        self._anchor, self._k = first_due, 0

    def advance(self) -> None:
        """The message that was due is going out; the next one is due one period on."""
        self._k += 1

    async def sleep(self, delay: float) -> bool:
        """`asyncio.sleep(delay)` that a new rate cuts short; True if one did."""
        # A bare future and timer, which is all asyncio.sleep is: the hot
        # path pays no more than before for being interruptible.
        loop = asyncio.get_running_loop()
        nap: asyncio.Future[bool] = loop.create_future()
        self._nap = nap
        timer = loop.call_later(delay, _wake, nap, False)
        try:
            return await nap
        finally:
            timer.cancel()
            self._nap = None

    def set_rate(self, rate: float) -> None:
        """Send at `rate` from now on; ValueError unless 0 < rate <= MAX_RATE."""
        period = 1.0 / check_rate(rate)
        if self._k > 0:
            # The next message is due one new period after the last one, or
            # now if that is past: the new rate counts from now on, and time
            # the device was behind is not made up at the new rate.
            last_due = self._anchor + (self._k - 1) * self._period
            now = asyncio.get_running_loop().time()
            self._anchor, self._k = max(last_due, now - period), 1
        # Before the first message, the first slot (staggered) stays as it was.
        self.rate, self._period = float(rate), period
        if self._nap is not None:
            _wake(self._nap, True)

    def register(self, commands: Commands) -> None:
        """Answer `set_rate` (`{"rate": r}`) and `get_rate` from `commands`."""
        commands.register("set_rate", self._set_rate_command)
        commands.register("get_rate", self._get_rate_command)

    async def _set_rate_command(self, args: dict[str, Any]) -> dict[str, float]:
        rate = args.get("rate")
        # bool is an int to Python, but `"rate": true` is no rate.
        if isinstance(rate, bool) or not isinstance(rate, int | float):
            raise ValueError(_rate_error(rate))
        self.set_rate(rate)
        return {"rate": self.rate}

    async def _get_rate_command(self, args: dict[str, Any]) -> dict[str, float]:
        return {"rate": self.rate}


def check_rate(rate: float) -> float:
    if not 0 < rate <= MAX_RATE:  # also refuses NaN
        raise ValueError(_rate_error(rate))
    return rate


def _rate_error(rate: object) -> str:
    return f"rate must be a number > 0 and <= {MAX_RATE:g}, not {rate!r}"


def _wake(nap: asyncio.Future[bool], interrupted: bool) -> None:
    if not nap.done():
        nap.set_result(interrupted)
