"""Stopping `telemetry-sim`: SIGINT and SIGTERM, once to finish, twice to cut off."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Protocol


class Stoppable(Protocol):
    """A sending loop: its task, and whether it is in the middle of a send."""

    task: asyncio.Task[None] | None
    busy: bool


class Stop:
    """Shutdown requests: the first lets sends finish, a second cuts them off."""

    def __init__(self) -> None:
        self.requested = False
        self.runners: Sequence[Stoppable] = ()

    def __call__(self) -> None:
        force = self.requested
        self.requested = True
        for runner in self.runners:
            # Only a runner waiting for its next slot is cancelled; one in the
            # middle of a send finishes it and then sees `requested`.
            if runner.task is not None and (force or not runner.busy):
                runner.task.cancel()


def install(stop: Stop) -> Callable[[], None]:
    """Route SIGINT and SIGTERM to `stop`; returns the undo."""
    loop = asyncio.get_running_loop()
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # only the main thread receives signals
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop)

    def undo() -> None:
        for signum in signals:
            loop.remove_signal_handler(signum)

    return undo
