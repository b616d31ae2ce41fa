"""What a link is: the protocol every transport implements, and what they share.

A link carries one device's payloads to the hub. There are three:
`MqttLink` (devices/mqtt_link.py), `SocketIOLink` (devices/socketio_link.py)
and `HttpLink` (devices/http_link.py). A send ends in one of three ways, and
the difference matters to anyone who keeps messages:

- `SendResult(ok=True)`: delivered. Over MQTT that means the broker took it
  (PUBACK at QoS 1); over Socket.IO and HTTP that the hub stored it, with the
  number of readings it accepted and rejected.
- `SendResult(ok=False, error=...)`: the hub answered and refused. Sending the
  same message again will be refused again, unless `retry` is set: then the
  hub could not take it just now (overloaded, shutting down) and it is worth
  keeping, like a message whose send raised `LinkError`.
- `LinkError`: the transport failed, and whether the message arrived is
  unknown. Keep it and send it again after `connect()`; the hub deduplicates on
  the device's `seq`, so a repeat is harmless.

Links never reconnect on their own. Once `connected` turns false, `connect()`
may be called again; when and how often is the caller's policy, so buffering
and retrying can live in one place (`Device`) for all transports.

Links that can hear the hub (MQTT, Socket.IO) are also a `CommandLink`: they
hand each command message they receive to a `CommandHandler` and send back
the reply it returns. HTTP cannot: the device only ever asks, the hub answers.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

from devices.errors import SetupError

T = TypeVar("T")

Payload = bytes | dict[str, Any] | list[dict[str, Any]]
"""A device payload: JSON already encoded, or an object or array to encode."""

Envelope = dict[str, Any]
"""`{"ts": epoch ms, "seq": device seq, "values": {...}}`, the contract's envelope."""

_DEVICE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True, slots=True)
class SendResult:
    """What became of one send; see the module docstring for the cases."""

    ok: bool
    accepted: int = 0
    rejected: int = 0
    error: str | None = None
    retry: bool = False
    # Set only by a `Device` with buffering: the envelope was kept, and the
    # device will deliver it; the caller must not send it again.
    buffered: bool = False


# The broker's PUBACK says nothing about readings, so every MQTT success is alike.
BROKER_TOOK_IT = SendResult(ok=True)


class Link(Protocol):
    """A connection from one device to the hub."""

    @property
    def device_id(self) -> str: ...

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None:
        """Open the connection; raises `LinkError`. Does nothing if connected."""

    async def send(self, payload: Payload) -> SendResult:
        """Deliver one payload; raises `LinkError` when the transport fails."""

    async def close(self) -> None:
        """Say goodbye and release the connection. Safe to call twice."""


CommandHandler = Callable[[object], Awaitable[dict[str, Any] | None]]
"""Called by a link with each command message as received (JSON bytes over
MQTT, the decoded event data over Socket.IO); returns the reply to send back,
or None to send nothing. `Commands.answer` is the one a `Device` installs."""


@runtime_checkable
class CommandLink(Protocol):
    """A link that receives commands from the hub and carries the replies back."""

    def set_command_handler(self, handler: CommandHandler | None) -> None:
        """Install the handler (None: commands are not answered)."""


def check_device_id(device_id: str) -> str:
    """`device_id` if the contract allows it (1-64 of A-Z a-z 0-9 _ . -)."""
    if not _DEVICE_ID.fullmatch(device_id):
        raise SetupError("device_id", device_id, "must be 1 to 64 of A-Z a-z 0-9 _ . -")
    return device_id


def check_hub_url(hub_url: str) -> str:
    parts = urlsplit(hub_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SetupError("hub_url", hub_url, "must look like http://host:port")
    return hub_url.rstrip("/")


def describe(exc: BaseException) -> str:
    # Some library errors (timeouts especially) have an empty message.
    return str(exc) or type(exc).__name__


def count_field(answer: dict[str, Any], key: str) -> int:
    value = answer.get(key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class Deadlines:
    """Timeouts of the sends in flight on one connection.

    Neither aiomqtt nor python-socketio fails a pending acknowledgement when
    the connection drops; both wait out the whole timeout. Holding on to the
    deadlines lets a link fail its sends as soon as it learns the connection
    is gone. It also spares a task per send: `asyncio.wait_for` with a timeout
    wraps its awaitable in one, `asyncio.timeout` does not.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._pending: set[asyncio.Timeout] = set()

    async def run(self, awaitable: Awaitable[T]) -> T:
        async with asyncio.timeout(self.seconds) as deadline:
            self._pending.add(deadline)
            try:
                return await awaitable
            finally:
                self._pending.discard(deadline)

    def expire(self) -> None:
        now = asyncio.get_running_loop().time()
        for deadline in list(self._pending):
            if not deadline.expired():
                deadline.reschedule(now)
