"""Counting a simulator run and showing how it goes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Self, TextIO

from devices.errors import LinkError


@dataclass(slots=True)
class Tally:
    """Messages of a run.

    Once the devices are closed, `sent` = `acknowledged` + `errors` +
    `dropped`: a message is delivered, failed (refused, or with buffering
    left unsent at exit), or given up by a full buffer. `buffered` counts the
    messages that waited in a buffer at some point, whatever became of them;
    `waiting` those in a buffer now. `commands` counts the hub's commands the
    devices answered (ok or not). `readings` counts the values in the
    acknowledged messages when they differ from message to message (firmware
    reports); None means as many in each as there are metrics.
    """

    sent: int = 0
    acknowledged: int = 0
    errors: int = 0
    buffered: int = 0
    waiting: int = 0
    dropped: int = 0
    commands: int = 0
    readings: int | None = None

    def summary(self, duration_s: float, metrics: int) -> str:
        """The exit line; scripts parse these key=value names, keep them (and add
        new ones at the end)."""
        rate = self.sent / duration_s if duration_s > 0 else 0.0
        readings = self.acknowledged * metrics if self.readings is None else self.readings
        return (
            f"sent={self.sent} acknowledged={self.acknowledged} errors={self.errors} "
            f"duration={duration_s:.2f} rate={rate:.1f} msg/s "
            f"readings={readings} "
            f"buffered={self.buffered} dropped={self.dropped} commands={self.commands}"
        )


class Progress:
    """Live progress of a `Tally` on a stream, normally stderr.

    On a terminal one line is redrawn in place twice a second; elsewhere (a
    log file, a CI job) a plain line is written every five seconds so the log
    stays readable. `quiet` draws nothing. `note()` prints a message above the
    live line. Drawing is a task of its own, started and stopped by the
    context manager, so counting costs the senders nothing but integer adds.
    """

    def __init__(
        self,
        tally: Tally,
        stream: TextIO,
        *,
        quiet: bool = False,
        interactive: bool | None = None,
        redraw_s: float = 0.5,
        log_every_s: float = 5.0,
    ) -> None:
        self.tally = tally
        self.stream = stream
        self.quiet = quiet
        self.interactive = stream.isatty() if interactive is None else interactive
        self.interval_s = redraw_s if self.interactive else log_every_s
        self._task: asyncio.Task[None] | None = None
        self._drawn = False

    def line(self, rate: float) -> str:
        tally = self.tally
        return (
            f"sent {tally.sent}  acknowledged {tally.acknowledged}  "
            f"errors {tally.errors}  buffered {tally.buffered} (waiting {tally.waiting})  "
            f"dropped {tally.dropped}  {rate:.0f} msg/s"
        )

    def note(self, message: str) -> None:
        self._clear()
        self.stream.write(f"{message}\n")
        self.stream.flush()

    async def __aenter__(self) -> Self:
        if not self.quiet:
            self._task = asyncio.create_task(self._draw(), name="sim-progress")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        self._clear()

    async def _draw(self) -> None:
        loop = asyncio.get_running_loop()
        last_time, last_sent = loop.time(), self.tally.sent
        while True:
            await asyncio.sleep(self.interval_s)
            now, sent = loop.time(), self.tally.sent
            rate = (sent - last_sent) / (now - last_time) if now > last_time else 0.0
            last_time, last_sent = now, sent
            if self.interactive:
                # Erase to the end of the line: the new text may be shorter.
                self.stream.write(f"\r{self.line(rate)}\x1b[K")
                self._drawn = True
            else:
                self.stream.write(f"{self.line(rate)}\n")
            self.stream.flush()

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False


async def connected_all(connects: Iterable[Awaitable[object]], progress: Progress) -> bool:
    """Connect a fleet at once: whether every connect succeeded, each link
    failure noted in `progress` (anything else is raised)."""
    results = await asyncio.gather(*connects, return_exceptions=True)
    failures = [result for result in results if isinstance(result, BaseException)]
    for failure in failures:
        if not isinstance(failure, LinkError):
            raise failure
        progress.note(str(failure))
    return not failures
