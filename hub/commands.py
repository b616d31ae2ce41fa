"""Admin commands to devices, over whichever link the device uses.

A device connected on Socket.IO `/devices` gets the command as a `command`
event and answers through its acknowledgement. A device heard over MQTT (a
retained `online` status, or telemetry within `presence.offline_after`) gets
it on `{prefix}/{id}/commands` and answers on `{prefix}/{id}/replies`; the
reply is matched to the command by its `id` and must come from the same
device. A device reachable neither way is `offline` (or, with `commands.ttl`,
the command waits that long for it to come online). Every command and how it
ended is recorded in the store.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

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
            if link is None:
                answer: dict[str, Any] = {"ok": False, "error": "offline"}
                outcome = "offline"
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
