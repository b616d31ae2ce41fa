"""A device: numbers its messages, stamps their time and hands them to a link,
or, with buffering, to a forwarder that keeps them while the link is down."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from devices.buffer import Buffering, BufferStats
from devices.commands import Commands
from devices.errors import SetupError
from devices.forwarder import Forwarder
from devices.link import CommandLink, Envelope, Link, SendResult, check_device_id

Reading = float | bool | str | Mapping[str, Any]
"""One value of a payload's `values`: a number, a flag, an attribute string or
a `{"value": x, "unit": u}` object."""

__all__ = ["Device", "Envelope", "Reading"]

_NO_STATS = BufferStats()


class Device:
    """One device talking to the hub through a `Link`.

    Every message gets a `seq` from the device's own counter, which the hub
    uses to store a repeated message only once. The counter therefore must not
    repeat across restarts of the process, and the device keeps no state on
    disk to remember it. Instead it starts at the current epoch time in
    milliseconds and counts up by one per message: a restarted device starts
    above every seq its previous run used as long as that run averaged fewer
    than 1000 messages per second. (A clock stepped backwards by more than the
    downtime would break that; devices should keep their clocks synchronized.)

    Building an envelope and sending it are separate steps (`envelope()`,
    `send_envelope()`), so an envelope keeps its `seq` and `ts` however late
    it is delivered.

    With `buffer=Buffering(...)` the device does store-and-forward itself:
    `send()` never raises `LinkError`; what cannot go now is kept (bounded,
    see `Buffering`) and a background task reconnects the link and flushes
    it in paced batches. Without it (`buffer=None`), every send goes straight
    to the link and its failures are the caller's to handle.

    Used as an async context manager, the device connects its link on enter
    (raising `LinkError` if it cannot, so a wrong address shows at once),
    starts forwarding, and on exit delivers what it still holds (within
    `Buffering.close_timeout`) and closes the link.

    The device answers the hub's commands through its link (MQTT and
    Socket.IO; HTTP cannot receive them) from `commands`, a `Commands`
    registry that answers `ping` and whatever the program registers. Pass
    `commands` to share a registry or set its limits; otherwise the device
    makes one on its own clock.
    """

    def __init__(
        self,
        device_id: str,
        link: Link,
        *,
        clock: Callable[[], float] = time.time,
        buffer: Buffering | None = None,
        rng: random.Random | None = None,
        commands: Commands | None = None,
    ) -> None:
        self.device_id = check_device_id(device_id)
        if link.device_id != device_id:
            raise SetupError("link", link.device_id, f"belongs to another device than {device_id}")
        self.link = link
        self.buffering = buffer
        self._clock = clock
        self.commands = commands if commands is not None else Commands(clock=clock)
        if isinstance(link, CommandLink):
            link.set_command_handler(self.commands.answer)
        self._next_seq = int(clock() * 1000)
        # The forwarder's reconnects and the caller's connect() must not race:
        # two concurrent connects of one link would open two connections.
        self._connecting = asyncio.Lock()
        self._forwarder = (
            Forwarder(device_id, link, buffer, self._connect_link, rng=rng)
            if buffer is not None
            else None
        )

    @property
    def next_seq(self) -> int:
        """The `seq` the next envelope will carry."""
        return self._next_seq

    @property
    def stats(self) -> BufferStats:
        """Store-and-forward counts (all zero without buffering)."""
        return self._forwarder.stats if self._forwarder is not None else _NO_STATS

    def envelope(self, values: Mapping[str, Reading], *, ts_ms: int | None = None) -> Envelope:
        """A new envelope for `values`, stamped now (or at `ts_ms`); uses up one seq."""
        seq = self._next_seq
        self._next_seq = seq + 1
        if ts_ms is None:
            ts_ms = int(self._clock() * 1000)
        return {"ts": ts_ms, "seq": seq, "values": dict(values)}

    async def send(self, values: Mapping[str, Reading]) -> SendResult:
        """Send one message of `values`, stamped now.

        Without buffering, raises `LinkError` if the link fails. With
        buffering, returns `SendResult(ok=False, buffered=True,
        error="buffered")` for a message kept to be delivered later.
        """
        return await self.send_envelope(self.envelope(values))

    async def send_envelope(self, envelope: Envelope) -> SendResult:
        """Send an envelope made earlier by `envelope()`, unchanged (as `send`)."""
        if self._forwarder is not None:
            return await self._forwarder.submit(envelope)
        return await self.link.send(envelope)

    async def send_batch(self, envelopes: Sequence[Envelope]) -> SendResult:
        """Send several envelopes as one JSON array, the contract's backfill form.

        This goes straight to the link, past any buffer: it is for callers who
        keep envelopes themselves.
        """
        return await self.link.send(list(envelopes))

    @property
    def connected(self) -> bool:
        return self.link.connected

    async def connect(self) -> None:
        """Connect the link now; raises `LinkError` if it cannot."""
        await self._connect_link()

    async def start(self) -> None:
        """Start forwarding (a no-op without buffering).

        `async with device` calls it after connecting. Call it without
        `connect()` for a device that must start offline: it then buffers
        from the first message and connects in the background.
        """
        if self._forwarder is not None:
            await self._forwarder.start()

    async def close(self) -> int:
        """Deliver what is buffered (within `close_timeout`), then close the link.

        Returns how many envelopes stayed unsent, also in `stats.unsent`.
        """
        unsent = 0
        try:
            if self._forwarder is not None:
                unsent = await self._forwarder.close()
        finally:
            await self.link.close()
        return unsent

    async def _connect_link(self) -> None:
        async with self._connecting:
            await self.link.connect()
        if self._forwarder is not None:
            self._forwarder.wake()

    async def __aenter__(self) -> Self:
        await self.connect()
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
