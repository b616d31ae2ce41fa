"""The HTTP link, on aiohttp: `POST /api/devices/{id}/telemetry`."""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
import orjson

from devices.errors import LinkError
from devices.link import (
    Payload,
    SendResult,
    check_device_id,
    check_hub_url,
    count_field,
    describe,
)

# Answers that mean "not now" rather than "not this": timeouts, rate limits,
# a hub that is overloaded, restarting or behind a failing proxy.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class HttpLink:
    """A device posting payloads to `POST /api/devices/{id}/telemetry`.

    One `aiohttp.ClientSession` carries every request, so connections are
    kept alive. Pass `session` to share one among many devices; the link then
    leaves closing it to its owner. HTTP has no connection to lose, so
    `connected` only means "ready to post".

    It cannot receive commands: every exchange is the device asking and the
    hub answering, and the contract has no route for a device to fetch
    commands. It is therefore not a `CommandLink`; a device that must obey
    commands uses MQTT or Socket.IO.
    """

    transport = "http"

    def __init__(
        self,
        device_id: str,
        hub_url: str,
        *,
        token: str = "",
        timeout: float = 10.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.device_id = check_device_id(device_id)
        self.url = f"{check_hub_url(hub_url)}/api/devices/{quote(device_id)}/telemetry"
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._shared = session
        self._session: aiohttp.ClientSession | None = None

    @property
    def connected(self) -> bool:
        return self._session is not None and not self._session.closed

    async def connect(self) -> None:
        if not self.connected:
            # aiohttp binds a session to the running loop, so it is made here.
            self._session = self._shared or aiohttp.ClientSession()

    async def send(self, payload: Payload) -> SendResult:
        session = self._session
        if session is None or session.closed:
            raise LinkError(self.transport, self.device_id, "send", "not connected")
        body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        try:
            async with session.post(
                self.url, data=body, headers=self._headers, timeout=self._timeout
            ) as response:
                status, raw = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LinkError(self.transport, self.device_id, "send", describe(exc)) from exc
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        accepted, rejected = count_field(answer, "accepted"), count_field(answer, "rejected")
        if 200 <= status < 300:
            return SendResult(True, accepted, rejected)
        error = answer.get("error")
        if not isinstance(error, str):
            error = f"HTTP {status}"
        return SendResult(False, 0, rejected, error, retry=status in RETRY_STATUSES)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and session is not self._shared:
            await session.close()
