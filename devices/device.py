"""A device: numbers its messages, stamps their time and hands them to a link."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from devices.errors import SetupError
from devices.link import Link, SendResult, check_device_id

Reading = float | bool | str | Mapping[str, Any]
"""One value of a payload's `values`: a number, a flag, an attribute string or
a `{"value": x, "unit": u}` object."""

Envelope = dict[str, Any]
"""`{"ts": epoch ms, "seq": device seq, "values": {...}}`, the contract's envelope."""


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
    it is delivered. That is what store-and-forward needs: keep the envelopes
    whose send raised `LinkError` or came back with `retry` set, and once
    `link.connected` is true again, send them with `send_batch()`. The links
    need no change for that.

    Used as an async context manager, the device connects its link on enter
    and closes it on exit.
    """

    def __init__(
        self, device_id: str, link: Link, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.device_id = check_device_id(device_id)
        if link.device_id != device_id:
            raise SetupError("link", link.device_id, f"belongs to another device than {device_id}")
        self.link = link
        self._clock = clock
        self._next_seq = int(clock() * 1000)

    @property
    def next_seq(self) -> int:
        """The `seq` the next envelope will carry."""
        return self._next_seq

    def envelope(self, values: Mapping[str, Reading], *, ts_ms: int | None = None) -> Envelope:
        """A new envelope for `values`, stamped now (or at `ts_ms`); uses up one seq."""
        seq = self._next_seq
        self._next_seq = seq + 1
        if ts_ms is None:
            ts_ms = int(self._clock() * 1000)
        return {"ts": ts_ms, "seq": seq, "values": dict(values)}

    async def send(self, values: Mapping[str, Reading]) -> SendResult:
        """Send one message of `values`; raises `LinkError` if the link fails."""
        return await self.link.send(self.envelope(values))

    async def send_envelope(self, envelope: Envelope) -> SendResult:
        """Send an envelope made earlier by `envelope()`, unchanged."""
        return await self.link.send(envelope)

    async def send_batch(self, envelopes: Sequence[Envelope]) -> SendResult:
        """Send several envelopes as one JSON array, the contract's backfill form."""
        return await self.link.send(list(envelopes))

    @property
    def connected(self) -> bool:
        return self.link.connected

    async def connect(self) -> None:
        await self.link.connect()

    async def close(self) -> None:
        await self.link.close()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
