"""The MQTT link, on aiomqtt: telemetry and presence topics on a broker."""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
from contextlib import AsyncExitStack
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aiomqtt
import orjson

from devices.errors import LinkError, SetupError
from devices.link import BROKER_TOOK_IT, Deadlines, Payload, SendResult, check_device_id, describe


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """Split `mqtt://user:pass@host:port` (or `mqtts://` for TLS) into its parts."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise SetupError("url", url, "must look like mqtt://host:port or mqtts://host:port")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise SetupError("url", url, "the port is not a number from 0 to 65535") from exc
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return BrokerAddress(parts.hostname, port, username, password, tls)


class MqttLink:
    """A device's MQTT connection, with `online`/`offline` presence.

    The broker holds a Last Will of `offline` (retained, QoS 1) on the status
    topic, so a device that dies without saying goodbye still goes offline.
    `connect()` publishes a retained `online` there and `close()` a retained
    `offline` before a clean DISCONNECT (which discards the Will). The client
    id is the device id, so a second connection of the same device replaces
    the first at the broker, as a device restart should.
    """

    transport = "mqtt"

    def __init__(
        self,
        device_id: str,
        url: str,
        *,
        topic_prefix: str = "devices",
        qos: int = 1,
        timeout: float = 10.0,
        keepalive: int = 60,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.device_id = check_device_id(device_id)
        self.address = parse_broker_url(url)
        if qos not in (0, 1, 2):
            raise SetupError("qos", qos, "must be 0, 1 or 2")
        self.qos = qos
        self.telemetry_topic = f"{topic_prefix}/{device_id}/telemetry"
        self.status_topic = f"{topic_prefix}/{device_id}/status"
        self._keepalive = keepalive
        self._tls_context = tls_context
        self._deadlines = Deadlines(timeout)
        self._client: aiomqtt.Client | None = None
        self._stack: AsyncExitStack | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._lost = False

    @property
    def connected(self) -> bool:
        return self._client is not None and not self._lost

    async def connect(self) -> None:
        if self.connected:
            return
        await self._release()
        address = self.address
        tls_context = self._tls_context
        if address.tls and tls_context is None:
            tls_context = ssl.create_default_context()
        client = aiomqtt.Client(
            address.host,
            address.port,
            username=address.username,
            password=address.password,
            identifier=self.device_id,
            will=aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True),
            timeout=self._deadlines.seconds,
            keepalive=self._keepalive,
            tls_context=tls_context,
        )
        stack = AsyncExitStack()
        try:
            await stack.enter_async_context(client)
        except aiomqtt.MqttError as exc:
            raise LinkError(self.transport, self.device_id, "connect", describe(exc)) from exc
        self._client, self._stack, self._lost = client, stack, False
        self._watcher = asyncio.create_task(
            self._watch(client), name=f"mqtt-watch-{self.device_id}"
        )
        try:
            await self._publish(self.status_topic, b"online", qos=1, retain=True)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            await self._release()
            raise LinkError(self.transport, self.device_id, "connect", describe(exc)) from exc

    async def send(self, payload: Payload) -> SendResult:
        if not self.connected:
            raise LinkError(self.transport, self.device_id, "send", "not connected")
        body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        try:
            await self._publish(self.telemetry_topic, body, qos=self.qos, retain=False)
        except aiomqtt.MqttError as exc:
            raise LinkError(self.transport, self.device_id, "send", describe(exc)) from exc
        except TimeoutError as exc:
            raise self._unacknowledged("send") from exc
        return BROKER_TOOK_IT

    async def close(self) -> None:
        if self.connected:
            # If the goodbye fails, so is the connection: the broker sends the Will.
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await self._publish(self.status_topic, b"offline", qos=1, retain=True)
        await self._release()

    async def _publish(self, topic: str, body: bytes, *, qos: int, retain: bool) -> None:
        client = self._client
        assert client is not None
        # aiomqtt's own timeout would cost a task per publish; the deadline
        # does the same job and can be cut short when the connection drops.
        await self._deadlines.run(
            client.publish(topic, body, qos=qos, retain=retain, timeout=math.inf)
        )

    def _unacknowledged(self, operation: str) -> LinkError:
        if self._lost:
            detail = "connection lost before the broker acknowledged"
        else:
            detail = f"no acknowledgement within {self._deadlines.seconds:g} s"
        return LinkError(self.transport, self.device_id, operation, detail)

    async def _watch(self, client: aiomqtt.Client) -> None:
        # Iterating the messages is aiomqtt's public way to learn that the
        # connection dropped; it also consumes the disconnect error, which
        # asyncio would otherwise log as never retrieved.
        try:
            async for _ in client.messages:
                pass  # nothing is subscribed yet; commands will arrive here
        except aiomqtt.MqttError:
            pass
        self._lost = True
        self._deadlines.expire()

    async def _release(self) -> None:
        watcher, stack = self._watcher, self._stack
        self._client = self._stack = self._watcher = None
        self._lost = False
        # aiomqtt leaves a publish waiting for its PUBACK after the client
        # disconnects; fail it now rather than at its timeout.
        self._deadlines.expire()
        if watcher is not None:
            watcher.cancel()
            await asyncio.wait([watcher])
        if stack is not None:
            try:
                await stack.aclose()  # a clean DISCONNECT unless already gone
            except aiomqtt.MqttError as exc:
                raise LinkError(self.transport, self.device_id, "close", describe(exc)) from exc
