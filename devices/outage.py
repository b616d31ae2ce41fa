"""Simulated outages for `telemetry-sim`: a radio that a schedule switches off.

A device out of coverage loses its connection and cannot get a new one until
coverage returns. `Radio` wraps a real link to play that: switching it off
closes the link, and while it is off `connect()` and `send()` fail with
`LinkError`, exactly as the real link fails when the network is gone. The
device's own store-and-forward (devices/forwarder.py) is then what is
exercised, unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

from devices.errors import LinkError
from devices.link import CommandHandler, CommandLink, Link, Payload, SendResult

OFF = "radio off (simulated outage)"


class Radio:
    """A `Link` around another link, with an on/off switch."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.on = True
        self.transport = str(getattr(link, "transport", "link"))

    @property
    def device_id(self) -> str:
        return self.link.device_id

    @property
    def connected(self) -> bool:
        return self.on and self.link.connected

    async def connect(self) -> None:
        if not self.on:
            raise LinkError(self.transport, self.device_id, "connect", OFF)
        await self.link.connect()

    async def send(self, payload: Payload) -> SendResult:
        if not self.on:
            raise LinkError(self.transport, self.device_id, "send", OFF)
        return await self.link.send(payload)

    async def close(self) -> None:
        await self.link.close()

    def set_command_handler(self, handler: CommandHandler | None) -> None:
        # Commands come through the real link, and stop with it while off.
        if isinstance(self.link, CommandLink):
            self.link.set_command_handler(handler)

    async def switch_off(self) -> None:
        """Lose the connection: close the link, and refuse to reconnect until on."""
        self.on = False
        # Closing a link that is already broken may fail; off is off either way.
        with contextlib.suppress(LinkError):
            await self.link.close()

    def switch_on(self) -> None:
        self.on = True


async def run_outages(
    radio: Radio, every: float, length: float, rng: random.Random, done: asyncio.Event
) -> None:
    """Switch `radio` off for `length` seconds about every `every` seconds until `done`.

    The first outage comes at a random point of the first period and each
    later one a period later, give or take a fifth, so a fleet does not go
    dark in lockstep. The radio is on again when this returns.
    """
    loop = asyncio.get_running_loop()
    off_at = loop.time() + rng.uniform(0, every)
    try:
        while not await _wait(done, off_at - loop.time()):
            await radio.switch_off()
            if await _wait(done, length):
                return
            radio.switch_on()
            off_at = max(off_at + every * rng.uniform(0.8, 1.2), loop.time())
    finally:
        radio.switch_on()


async def _wait(done: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`; True at once if `done` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(seconds, 0)):
            await done.wait()
    return done.is_set()
