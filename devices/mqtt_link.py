"""The MQTT link, on aiomqtt: telemetry, presence, commands and replies on a broker."""

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
from devices.link import (
    BROKER_TOOK_IT,
    CommandHandler,
    Deadlines,
    Payload,
    SendResult,
    check_device_id,
    describe,
)

# Commands whose reply is still being made or published. The device's
# `Commands` answers a flood with quick `busy` replies, so this bound is only
# reached when the replies cannot get out; further commands are then dropped
# unanswered (the hub times them out) instead of piling up tasks.
MAX_COMMANDS_IN_FLIGHT = 64
# aiomqtt's incoming queue is unbounded by default. The watcher empties it as
# fast as messages come, so this only caps a broker that floods the device.
MAX_QUEUED_INCOMING = 1000


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

    With a command handler (`set_command_handler`, which `Device` calls),
    `connect()` subscribes at QoS 1 to `{prefix}/{id}/commands` before it
    announces `online`, so a hub that waits for `online` to send a command
    finds the device listening. Each command runs in a task of its own (a slow
    one does not hold up the others, nor the watch on the connection), and
    its reply goes to `{prefix}/{id}/replies` at QoS 1. Sessions are clean:
    commands published while the device is offline are not kept for it (see
    docs/devices.md, "Commands"). Retained messages on the commands topic are
    ignored: the broker replays them on every subscribe, which would run a
    stale command at each reconnect.
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
        self.commands_topic = f"{topic_prefix}/{device_id}/commands"
        self.replies_topic = f"{topic_prefix}/{device_id}/replies"
        # Replies that could not be published (connection lost, no PUBACK)
        # and commands dropped beyond MAX_COMMANDS_IN_FLIGHT.
        self.replies_lost = 0
        self.commands_dropped = 0
        # False if the broker refused the commands subscription (an ACL, say):
        # telemetry still flows, so that is not a reason to fail connect().
        self.listening = False
        self._command_handler: CommandHandler | None = None
        self._commands: set[asyncio.Task[None]] = set()
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

    def set_command_handler(self, handler: CommandHandler | None) -> None:
        """Answer commands with `handler`; takes effect at the next `connect()`."""
        self._command_handler = handler

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
            max_queued_incoming_messages=MAX_QUEUED_INCOMING,
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
            if self._command_handler is not None:
                await self._subscribe_commands(client)
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

    async def _subscribe_commands(self, client: aiomqtt.Client) -> None:
        # A clean session forgets subscriptions, so every connect subscribes.
        granted = await self._deadlines.run(
            client.subscribe(self.commands_topic, qos=1, timeout=math.inf)
        )
        # MQTT 3.1.1 grants a QoS or refuses with 0x80; v5 gives reason codes.
        code = granted[0]
        self.listening = not (code >= 128 if isinstance(code, int) else code.is_failure)

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
            async for message in client.messages:
                if not message.retain and message.topic.matches(self.commands_topic):
                    self._start_command(client, message.payload)
        except aiomqtt.MqttError:
            pass
        self._lost = True
        self._deadlines.expire()

    def _start_command(self, client: aiomqtt.Client, payload: object) -> None:
        handler = self._command_handler
        if handler is None:
            return
        if len(self._commands) >= MAX_COMMANDS_IN_FLIGHT:
            self.commands_dropped += 1
            return
        task = asyncio.create_task(
            self._answer(client, handler, payload), name=f"mqtt-command-{self.device_id}"
        )
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    async def _answer(
        self, client: aiomqtt.Client, handler: CommandHandler, payload: object
    ) -> None:
        try:
            reply = await handler(payload)
            if reply is None:
                return
            body = orjson.dumps(reply)
        except Exception:
            # `Commands.answer` never raises; another handler that does must
            # not leave a task error behind. The hub times the command out.
            self.replies_lost += 1
            return
        if self._client is not client or self._lost:
            self.replies_lost += 1  # the connection it came on is gone
            return
        try:
            # QoS 1, like the commands: the hub is waiting for exactly this.
            await self._deadlines.run(
                client.publish(self.replies_topic, body, qos=1, timeout=math.inf)
            )
        except (aiomqtt.MqttError, TimeoutError):
            self.replies_lost += 1

    async def _release(self) -> None:
        watcher, stack = self._watcher, self._stack
        self._client = self._stack = self._watcher = None
        self._lost = False
        self.listening = False
        # aiomqtt leaves a publish waiting for its PUBACK after the client
        # disconnects; fail it now rather than at its timeout.
        self._deadlines.expire()
        # A command handler may itself close the link (a "restart" command);
        # its own task must not wait for itself.
        current = asyncio.current_task()
        tasks = [task for task in (watcher, *self._commands) if task and task is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if stack is not None:
            try:
                await stack.aclose()  # a clean DISCONNECT unless already gone
            except aiomqtt.MqttError as exc:
                raise LinkError(self.transport, self.device_id, "close", describe(exc)) from exc
