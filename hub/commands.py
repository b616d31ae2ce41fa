"""Admin commands to devices, over whichever link the device uses.

A device connected on Socket.IO `/devices` gets the command as a `command`
event and answers through its acknowledgement. A device heard over MQTT (a
retained `online` status, or telemetry within `presence.offline_after`) gets
it on `{prefix}/{id}/commands` and answers on `{prefix}/{id}/replies`; the
reply is matched to the command by its `id` and must come from the same
device. A device reachable neither way is `offline` (or, with `commands.ttl`,
the command waits that long for it to come online). Every command and how it
ended is recorded in the store.

In a cluster (`storage.url`) a device may be connected by Socket.IO to
another hub than the admin's. The command then goes to every hub over
PostgreSQL NOTIFY (`Bus`, channel `hub_commands`); the hub that holds the
device's connection says so at once (`taken`), delivers it, and sends the
reply back the same way (`hub_replies`). No hub taking it within
`TAKE_WITHIN` means no hub holds the device: `offline`. The admin's hub
records the command. MQTT devices need no relay: every hub can publish to
them, and their replies (not a shared subscription) reach every hub.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import orjson
import socketio

from hub.config import CommandSettings
from hub.errors import StoreError
from hub.metrics import Metrics
from hub.models import CommandRecord
from hub.presence import MQTT_LINK, Presence
from hub.store.base import Store

log = logging.getLogger(__name__)

DEVICES = "/devices"
MAX_REPLY_BYTES = 65536
COMMANDS_CHANNEL = "hub_commands"  # a command for a device on another hub
REPLIES_CHANNEL = "hub_replies"  # `taken`, then the device's reply
TAKE_WITHIN = 1.0  # seconds for the hub holding the device to take a relayed command
RELAY_MAX = 7900  # bytes of a relayed message (PostgreSQL NOTIFY's payload limit)


@runtime_checkable
class Bus(Protocol):
    """Notifications between the hubs of a cluster (the PostgreSQL store)."""

    def on_notification(self, channel: str, callback: Callable[[str], None]) -> None: ...

    async def notify(self, channel: str, payload: str) -> None: ...


class Relayed:
    """A command this hub sent to the others, until its reply comes."""

    def __init__(self) -> None:
        self.taken = asyncio.Event()
        self.reply: asyncio.Future[tuple[dict[str, Any], str]] = (
            asyncio.get_running_loop().create_future()
        )


class Commands:
    def __init__(
        self,
        sio: socketio.AsyncServer,
        store: Store,
        presence: Presence,
        metrics: Metrics,
        settings: CommandSettings,
        *,
        topic_prefix: str,
        offline_after: float,
        bus: Bus | None = None,
    ) -> None:
        self.sio = sio
        self.store = store
        self.presence = presence
        self.metrics = metrics
        self.settings = settings
        self.topic_prefix = topic_prefix
        self.offline_after = offline_after
        # wired by the app: the device's Socket.IO sid, MQTT publishing, MQTT hearing
        self.socket_of: Callable[[str], str | None] = lambda device_id: None
        self.mqtt_publish: Callable[[str, bytes], None] | None = None
        self.heard_over_mqtt: Callable[[str, float], bool] = lambda device_id, within: False
        self._pending: dict[str, tuple[str, asyncio.Future[Any]]] = {}
        self.in_flight = 0  # commands sent and not yet ended (waiting for a link or a reply)
        self.bus = bus
        self._relayed: dict[str, Relayed] = {}
        self._serving: set[asyncio.Task[None]] = set()
        if bus is not None:
            bus.on_notification(COMMANDS_CHANNEL, self._on_relayed_command)
            bus.on_notification(REPLIES_CHANNEL, self._on_relayed_reply)

    def timeout_of(self, timeout_ms: Any) -> float:
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int | float):
            return self.settings.timeout
        return max(0.001, min(self.settings.max_timeout, timeout_ms / 1000))

    async def send(
        self, device_id: str, name: str, args: dict[str, Any], within: float
    ) -> dict[str, Any]:
        """Send a command and wait for the reply; the answer is the device's
        reply, or `{"ok": false, "error": "timeout" | "offline" | ...}`."""
        command = {"id": secrets.token_hex(8), "name": name, "args": args}
        sent = time.time()
        deadline = time.monotonic() + within
        self.in_flight += 1
        try:
            link = self._route(device_id)
            if link is None and self.settings.ttl > 0:
                link = await self._wait_for_link(
                    device_id, min(deadline, time.monotonic() + self.settings.ttl)
                )
            if link is None and self.bus is not None:
                remaining = max(0.001, deadline - time.monotonic())
                answer, outcome = await self._via_cluster(device_id, command, remaining)
                link = "socketio" if outcome != "offline" else None
            elif link is None:
                answer, outcome = {"ok": False, "error": "offline"}, "offline"
            else:
                remaining = max(0.001, deadline - time.monotonic())
                answer, outcome = await self._deliver(link, device_id, command, remaining)
        finally:
            self.in_flight -= 1
        answer["id"] = command["id"]
        self.metrics.inc("hub_commands_total", outcome=outcome)
        await self._record(command, device_id, link, sent, outcome, answer)
        return answer

    def on_mqtt_reply(self, device_id: str, payload: bytes) -> None:
        """A reply on `{prefix}/{device_id}/replies`."""
        try:
            reply = (
                orjson.loads(payload[:MAX_REPLY_BYTES]) if len(payload) <= MAX_REPLY_BYTES else None
            )
        except orjson.JSONDecodeError:
            reply = None
        command_id = reply.get("id") if isinstance(reply, dict) else None
        pending = self._pending.get(command_id) if isinstance(command_id, str) else None
        if pending is None or pending[0] != device_id:
            # unknown, late, malformed, or another device answering for this one
            self.metrics.inc("hub_command_replies_unmatched_total")
            return
        future = pending[1]
        if not future.done():
            future.set_result(reply)

    # -- across the hubs of a cluster ------------------------------------------

    async def _via_cluster(
        self, device_id: str, command: dict[str, Any], within: float
    ) -> tuple[dict[str, Any], str]:
        """Hand the command to the hub that holds the device, and wait for
        its reply."""
        assert self.bus is not None
        message = orjson.dumps({"device_id": device_id, "command": command, "within": within})
        if len(message) > RELAY_MAX:
            error = f"the command is too large to relay to another hub ({len(message)} bytes)"
            return {"ok": False, "error": error}, "error"
        relayed = self._relayed[command["id"]] = Relayed()
        try:
            await self.bus.notify(COMMANDS_CHANNEL, message.decode())
            async with asyncio.timeout(min(TAKE_WITHIN, within)):
                await relayed.taken.wait()
        except TimeoutError:
            return {"ok": False, "error": "offline"}, "offline"
        except StoreError as exc:
            return {"ok": False, "error": f"not delivered: {exc}"}, "error"
        finally:
            if not relayed.taken.is_set():
                self._relayed.pop(command["id"], None)
        try:
            # the serving hub answers `timeout` itself after `within`
            async with asyncio.timeout(within + TAKE_WITHIN):
                return await relayed.reply
        except TimeoutError:
            return {"ok": False, "error": "timeout"}, "timeout"
        finally:
            self._relayed.pop(command["id"], None)

    def _on_relayed_command(self, payload: str) -> None:
        try:
            message = orjson.loads(payload)
            device_id, command, within = message["device_id"], message["command"], message["within"]
            command_id = command["id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("a relayed command is malformed: %.200s", payload)
            return
        if command_id in self._relayed or self.socket_of(device_id) is None:
            return  # this hub sent it, or does not hold the device
        task = asyncio.create_task(self._serve_relayed(device_id, command, float(within)))
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _serve_relayed(self, device_id: str, command: dict[str, Any], within: float) -> None:
        assert self.bus is not None
        command_id = command["id"]
        try:
            await self.bus.notify(REPLIES_CHANNEL, orjson.dumps({"id": command_id}).decode())
            answer, outcome = await self._deliver("socketio", device_id, command, within)
            reply = orjson.dumps({"id": command_id, "answer": answer, "outcome": outcome})
            if len(reply) > RELAY_MAX:
                error = {"ok": False, "error": "the reply is too large to relay to another hub"}
                reply = orjson.dumps({"id": command_id, "answer": error, "outcome": "error"})
            await self.bus.notify(REPLIES_CHANNEL, reply.decode())
        except StoreError as exc:
            log.warning("command %s for %s: reply not relayed: %s", command_id, device_id, exc)

    def _on_relayed_reply(self, payload: str) -> None:
        try:
            message = orjson.loads(payload)
            relayed = self._relayed.get(message["id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("a relayed reply is malformed: %.200s", payload)
            return
        if relayed is None:
            return  # another hub's command, or one that ended
        if "answer" not in message:
            relayed.taken.set()
        elif not relayed.reply.done() and isinstance(message["answer"], dict):
            relayed.taken.set()
            relayed.reply.set_result((message["answer"], str(message.get("outcome", "error"))))

    # -- delivery -----------------------------------------------------------

    def _route(self, device_id: str) -> str | None:
        if self.socket_of(device_id) is not None:
            return "socketio"
        if self.mqtt_publish is not None and (
            self.presence.has_link(device_id, MQTT_LINK)
            or self.heard_over_mqtt(device_id, self.offline_after)
        ):
            return "mqtt"
        return None

    async def _wait_for_link(self, device_id: str, until: float) -> str | None:
        while time.monotonic() < until:
            await asyncio.sleep(0.1)
            link = self._route(device_id)
            if link is not None:
                return link
        return None

    async def _deliver(
        self, link: str, device_id: str, command: dict[str, Any], within: float
    ) -> tuple[dict[str, Any], str]:
        try:
            if link == "socketio":
                sid = self.socket_of(device_id)
                if sid is None:
                    return {"ok": False, "error": "offline"}, "offline"
                reply = await self.sio.call(
                    "command", command, to=sid, namespace=DEVICES, timeout=within
                )
            else:
                reply = await self._over_mqtt(device_id, command, within)
        except (TimeoutError, socketio.exceptions.TimeoutError):
            return {"ok": False, "error": "timeout"}, "timeout"
        except (ConnectionError, socketio.exceptions.SocketIOError) as exc:
            return {"ok": False, "error": f"not delivered: {exc}"}, "error"
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            return {
                "ok": False,
                "error": "the device's reply is not a reply object",
            }, "invalid_reply"
        answer = {k: reply[k] for k in ("ok", "result", "error") if k in reply}
        return answer, "ok" if reply["ok"] else "error"

    async def _over_mqtt(self, device_id: str, command: dict[str, Any], within: float) -> Any:
        assert self.mqtt_publish is not None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[command["id"]] = (device_id, future)
        try:
            self.mqtt_publish(f"{self.topic_prefix}/{device_id}/commands", orjson.dumps(command))
            return await asyncio.wait_for(future, within)
        finally:
            self._pending.pop(command["id"], None)

    async def _record(
        self,
        command: dict[str, Any],
        device_id: str,
        link: str | None,
        sent: float,
        outcome: str,
        answer: dict[str, Any],
    ) -> None:
        record = CommandRecord(
            command["id"],
            device_id,
            command["name"],
            orjson.dumps(command["args"]).decode(),
            link,
            int(sent * 1000),
            int(time.time() * 1000),
            outcome,
            orjson.dumps(answer).decode(),
        )
        try:
            await self.store.record_command(record)
        except StoreError as exc:
            log.error("command %s to %s not recorded: %s", command["id"], device_id, exc)
