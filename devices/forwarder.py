"""Store-and-forward for one device: keep envelopes while the link is down,
reconnect with backoff, and flush them oldest first, in paced batches.

The links stay simple (they never reconnect, see devices/link.py); all the
policy is here, the same for every transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable

from devices.buffer import Buffer, Buffering, BufferStats
from devices.errors import LinkError
from devices.link import Envelope, Link, SendResult
from hub.pacing import TokenBucket, backoff_delay

# The envelope and whether a send of it was already tried, to count resends.
_Held = tuple[Envelope, bool]

BUFFERED = SendResult(ok=False, error="buffered", buffered=True)
"""What `Device.send()` returns for an envelope it kept to deliver later."""


class Forwarder:
    """Delivers a device's envelopes, keeping them while it cannot.

    An envelope goes straight to the link only when nothing is waiting and no
    batch is in flight; otherwise it queues behind the others, so the hub gets
    each device's envelopes in the order they were made (for a caller that
    awaits each send before making the next). A background task, started by
    `start()`, reconnects the link and flushes; `close()` stops it.
    """

    def __init__(
        self,
        device_id: str,
        link: Link,
        options: Buffering,
        connect: Callable[[], Awaitable[None]],
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.device_id = device_id
        self.options = options
        self._link = link
        self._connect = connect
        self._rng = rng or random.Random()
        self._buffer: Buffer[_Held] = Buffer(options.max_envelopes, options.policy)
        self._in_flight: list[_Held] = []
        self._pacer = TokenBucket(options.flush_rate, options.batch_size)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._failures = 0  # consecutive, for the backoff
        self._broken = False  # a send failed: start over with a new connection
        self._flushed = self._resent = self._delivered = self._rejected = self._unsent = 0
        self._last_error: str | None = None

    @property
    def stats(self) -> BufferStats:
        return BufferStats(
            buffered=len(self._buffer) + len(self._in_flight),
            buffered_total=self._buffer.added,
            dropped=self._buffer.dropped,
            flushed=self._flushed,
            resent=self._resent,
            delivered=self._delivered,
            rejected=self._rejected,
            unsent=self._unsent,
            last_error=self._last_error,
        )

    def wake(self) -> None:
        """Look at the link and the buffer now rather than at the next check."""
        self._wake.set()

    async def submit(self, envelope: Envelope) -> SendResult:
        """Send `envelope` now if the way is clear, else keep it; see `Device.send`."""
        task = self._task
        if task is not None and task.done():
            task.result()  # the forwarding task failed: raise its error here
        if self._closed:
            return await self._link.send(envelope)
        if self._buffer or self._in_flight or not self._link.connected:
            return self._keep(envelope, tried=False)
        try:
            result = await self._link.send(envelope)
        except LinkError as exc:
            self._last_error = str(exc)
            self._broken = True
            return self._keep(envelope, tried=True)
        except asyncio.CancelledError:
            # The caller gave up waiting, not the device on the reading.
            self._keep(envelope, tried=True)
            raise
        if result.ok:
            self._delivered += 1
            return result
        if result.retry:
            self._last_error = f"hub: {result.error}"
            return self._keep(envelope, tried=True)
        self._rejected += 1
        self._last_error = f"hub refused: {result.error}"
        return result

    async def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name=f"forward-{self.device_id}")

    async def close(self) -> int:
        """Stop forwarding; deliver what is left within `close_timeout`.

        Returns how many envelopes stayed unsent (also `stats.unsent`). Later
        sends go straight to the link, which is closed by then.
        """
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                task.result()
        if self._buffer and self.options.close_timeout > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.close_timeout):
                    if not self._link.connected:
                        # A last chance, not a retry: no backoff before it.
                        try:
                            await self._connect()
                        except LinkError as exc:
                            self._last_error = str(exc)
                    await self._deliver(stay_connected=False)
        self._unsent = len(self._buffer)
        return self._unsent

    def _keep(self, envelope: Envelope, *, tried: bool) -> SendResult:
        self._buffer.add((envelope, tried))
        self._wake.set()
        return BUFFERED

    async def _run(self) -> None:
        while True:
            await self._deliver(stay_connected=True)
            self._wake.clear()
            # Polling `connected` now and then is how an idle device notices a
            # dropped link: the links report it, but do not call anyone back.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.watch_interval):
                    await self._wake.wait()

    async def _deliver(self, *, stay_connected: bool) -> None:
        """Flush until the buffer is empty, reconnecting as needed; with
        `stay_connected`, also reconnect a link that dropped while idle."""
        while self._buffer or (stay_connected and not self._link.connected):
            if self._broken:
                await self._drop_link()
            if not self._link.connected:
                await self._reconnect()
            elif not await self._flush_batch() and not self._broken:
                await self._pause()

    async def _drop_link(self) -> None:
        # A link can fail a send and still say it is connected: no PUBACK or
        # ack in time, or a socket the peer left without closing. Sending
        # again on it would only wait out the timeout again; a new
        # connection is what MQTT and Socket.IO clients do then.
        self._broken = False
        if self._link.connected:
            with contextlib.suppress(LinkError):
                await self._link.close()

    async def _reconnect(self) -> None:
        await self._pause()
        try:
            await self._connect()
        except LinkError as exc:
            self._last_error = str(exc)
        else:
            self._failures = 0

    async def _pause(self) -> None:
        options = self.options
        delay = backoff_delay(
            self._failures, options.reconnect_min, options.reconnect_max, self._rng
        )
        self._failures += 1
        await asyncio.sleep(delay)

    async def _flush_batch(self) -> bool:
        """Send the oldest batch; False if it has to be tried again later."""
        count = min(self.options.batch_size, len(self._buffer))
        await self._pacer.take(count)
        batch = self._buffer.take(count)
        if not batch:
            return True  # dropped or flushed while waiting for the pacer
        self._in_flight = batch
        self._resent += sum(1 for _, tried in batch if tried)
        try:
            result = await self._link.send([envelope for envelope, _ in batch])
        except LinkError as exc:
            self._last_error = str(exc)
            self._broken = True
            self._requeue(batch)
            return False
        except BaseException:
            self._requeue(batch)  # cancelled by close(), which sends it again
            raise
        self._in_flight = []
        if result.ok:
            self._flushed += len(batch)
            self._delivered += len(batch)
            self._failures = 0
            return True
        if result.retry:
            self._last_error = f"hub: {result.error}"
            self._requeue(batch)
            return False
        # Refused for good: sending it again would be refused again.
        self._rejected += len(batch)
        self._last_error = f"hub refused: {result.error}"
        return True

    def _requeue(self, batch: list[_Held]) -> None:
        self._in_flight = []
        self._buffer.put_back((envelope, True) for envelope, _ in batch)
