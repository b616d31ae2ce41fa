"""The Socket.IO link, on python-socketio: the hub's `/devices` namespace."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

import aiohttp
import orjson
import socketio

from devices.errors import LinkError
from devices.link import (
    CommandHandler,
    Deadlines,
    Payload,
    SendResult,
    check_device_id,
    check_hub_url,
    count_field,
    describe,
)


class SocketIOLink:
    """A device's Socket.IO connection to the hub's `/devices` namespace.

    python-socketio's own reconnection is switched off, because reconnecting
    is the caller's policy (see devices/link.py). So is its SIGINT handler,
    which would otherwise replace the application's for the whole process.

    The hub's `command` events go to the command handler (`Device` installs
    its `Commands`), and its reply is the event's acknowledgement: python-
    socketio sends a handler's return value as the ack. python-engineio runs
    each received message in a task of its own, so a slow command holds up
    neither the others nor the connection's pings.
    """

    transport = "socketio"
    namespace = "/devices"

    def __init__(
        self,
        device_id: str,
        hub_url: str,
        *,
        token: str = "",
        transports: list[str] | None = None,
        timeout: float = 10.0,
        close_grace: float = 1.0,
    ) -> None:
        self.device_id = check_device_id(device_id)
        self.hub_url = check_hub_url(hub_url)
        self._auth = {"device_id": device_id, "token": token}
        self._transports = transports
        self._deadlines = Deadlines(timeout)
        self._close_grace = close_grace
        self._client: Any = None  # socketio.AsyncClient, which ships no types
        self._session: aiohttp.ClientSession | None = None
        self._responses = _Responses()
        self._up = False
        self._command_handler: CommandHandler | None = None

    @property
    def connected(self) -> bool:
        return self._up

    def set_command_handler(self, handler: CommandHandler | None) -> None:
        """Answer `command` events with `handler`; takes effect at once."""
        self._command_handler = handler

    async def connect(self) -> None:
        if self._up:
            return
        await self.close()
        # The link owns the HTTP session so that close() can cut a long poll.
        responses = _Responses()
        session = aiohttp.ClientSession(trace_configs=[responses.trace])
        client = socketio.AsyncClient(reconnection=False, handle_sigint=False, http_session=session)
        refusals: list[object] = []

        async def on_connect_error(data: object = None) -> None:
            refusals.append(data)

        async def on_disconnect(reason: object = None) -> None:
            if self._client is client:  # not a late event of a replaced client
                self._up = False
                self._deadlines.expire()

        client.on("connect_error", on_connect_error, namespace=self.namespace)
        client.on("disconnect", on_disconnect, namespace=self.namespace)
        client.on("command", self._on_command, namespace=self.namespace)
        try:
            await client.connect(
                self.hub_url,
                auth=self._auth,
                transports=self._transports,
                namespaces=[self.namespace],
                wait_timeout=self._deadlines.seconds,
            )
        except Exception as exc:
            # Mostly socketio's ConnectionError, but python-engineio lets other
            # errors out of a handshake the server cuts short: a hub shutting
            # down closes a fresh WebSocket, and decoding the close code as the
            # OPEN packet raises TypeError. Either way the connect failed.
            await _abandon(client, session, responses)
            detail = _refusal(refusals[-1]) if refusals else describe(exc)
            raise LinkError(self.transport, self.device_id, "connect", detail) from exc
        except BaseException:
            await _abandon(client, session, responses)
            raise
        self._client, self._session, self._up = client, session, True
        self._responses = responses

    async def send(self, payload: Payload) -> SendResult:
        client = self._client
        if not self._up or client is None:
            raise LinkError(self.transport, self.device_id, "send", "not connected")
        # The hub wants a JSON payload, and bytes would travel as a binary attachment.
        data = orjson.loads(payload) if isinstance(payload, bytes) else payload
        try:
            ack = await self._deadlines.run(
                client.call("telemetry", data, namespace=self.namespace, timeout=None)
            )
        except socketio.exceptions.SocketIOError as exc:
            raise LinkError(self.transport, self.device_id, "send", describe(exc)) from exc
        except TimeoutError as exc:
            detail = (
                f"no acknowledgement within {self._deadlines.seconds:g} s"
                if self._up
                else "connection lost before the hub acknowledged"
            )
            raise LinkError(self.transport, self.device_id, "send", detail) from exc
        if isinstance(ack, dict) and ack.get("ok") is True:
            return SendResult(True, count_field(ack, "accepted"), count_field(ack, "rejected"))
        if isinstance(ack, dict) and ack.get("ok") is False:
            error = str(ack.get("error") or "refused by the hub")
            # "retry" is not in the contract yet; a hub may add it ("more keys
            # are welcome") to mark a refusal as temporary.
            retry = ack.get("retry") is True
            return SendResult(False, 0, count_field(ack, "rejected"), error, retry=retry)
        return SendResult(False, error=f"unexpected acknowledgement {ack!r}")

    async def _on_command(self, *data: object) -> dict[str, Any] | None:
        # The contract's command is one object; anything else reaches the
        # handler as a list, which it counts as malformed and ignores. None
        # goes out as an empty acknowledgement.
        handler = self._command_handler
        if handler is None:
            return None
        return await handler(data[0] if len(data) == 1 else list(data))

    async def close(self) -> None:
        client, session, responses = self._client, self._session, self._responses
        self._client, self._session, self._up = None, None, False
        self._deadlines.expire()
        if client is None or session is None:
            return
        # Over long polling, disconnect() waits for the GET the server holds
        # open, and python-engineio's server answers it only at its next ping
        # (25 s). The CLOSE has gone out long before the grace period ends;
        # closing the session then ends the GET instead of waiting it out.
        disconnecting = asyncio.ensure_future(client.disconnect())
        try:
            await asyncio.wait([disconnecting], timeout=self._close_grace)
            if not disconnecting.done():
                await session.close()
            await disconnecting
        except (socketio.exceptions.SocketIOError, aiohttp.ClientError) as exc:
            raise LinkError(self.transport, self.device_id, "close", describe(exc)) from exc
        finally:
            await session.close()
            responses.release()


class _Responses:
    """The HTTP responses of a link's session that still hold a connection.

    python-engineio does not always let go of its responses: it leaves the
    WebSocket open when a handshake fails after the upgrade, and never reads
    the answers to its polling POSTs, which keep their connection if the
    server goes away mid-answer. Closing the session shuts their sockets, but
    aiohttp still warns about each such connection when it is collected, so
    the link releases them itself when it is done with a session.
    """

    def __init__(self) -> None:
        self._open: list[aiohttp.ClientResponse] = []
        self.trace = aiohttp.TraceConfig()
        self.trace.on_request_end.append(self._ended)

    async def _ended(
        self,
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        # Forget the ones aiohttp released already, so the list stays short.
        self._open = [r for r in self._open if r.connection is not None]
        self._open.append(params.response)

    def release(self) -> None:
        for response in self._open:
            response.close()
        self._open = []


async def _abandon(client: Any, session: aiohttp.ClientSession, responses: _Responses) -> None:
    try:
        with contextlib.suppress(socketio.exceptions.SocketIOError, aiohttp.ClientError):
            await client.disconnect()
    finally:
        await session.close()
        responses.release()


def _refusal(data: object) -> str:
    # Servers refuse a namespace with a string or with {"message": ...}.
    if isinstance(data, dict) and "message" in data:
        return str(data["message"])
    return str(data)
