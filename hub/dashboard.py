"""The `/dashboard` namespace: dashboards subscribe to devices and receive
`readings` frames and `presence` changes.

`subscribe` adds to what the client already has, `unsubscribe` takes away;
both answer `{"epoch", "seq": HEAD, "devices": [...]}`, where HEAD is the
last seq before the first one the client will receive live. The first
`subscribe` of a client that connected with a cursor starts its replay
(`hub.replay`); later calls wait until that replay is over.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio

from hub.auth import Authenticator
from hub.broadcast import ALL, DASHBOARD, Broadcaster, Subscription
from hub.errors import AuthError
from hub.models import is_valid_device_id
from hub.replay import Cursor, Replayer

log = logging.getLogger(__name__)

MAX_SELECTORS = 1000


class DashboardNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    def __init__(self, broadcaster: Broadcaster, replayer: Replayer, auth: Authenticator):
        super().__init__(DASHBOARD)
        self.broadcaster = broadcaster
        self.replayer = replayer
        self.auth = auth
        self.cursors: dict[str, Cursor] = {}

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        auth = auth if isinstance(auth, dict) else {}
        token = auth.get("token", "")
        try:
            self.auth.check_dashboard(token if isinstance(token, str) else "")
        except AuthError as exc:
            raise socketio.exceptions.ConnectionRefusedError(exc.reason) from None
        cursor = Cursor.parse(auth.get("cursor"))
        if cursor is not None:
            self.cursors[sid] = cursor

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self.cursors.pop(sid, None)
        self.replayer.cancel(sid)
        async with self.broadcaster.lock:
            await self.broadcaster.remove(sid)

    async def on_subscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        selectors, error = _selectors(data)
        if error:
            return {"ok": False, "error": error}
        await self.replayer.wait(sid)
        cursor = self.cursors.pop(sid, None)
        async with self.broadcaster.lock:
            current = self.broadcaster.subscription(sid) or Subscription.of(())
            subscription = current.union(Subscription.of(selectors))
            if cursor is None:
                await self.broadcaster.place(sid, subscription)
            else:
                # The replay joins the live room itself, once it has caught up.
                self.replayer.start(sid, subscription, cursor)
            return self._answer(subscription)

    async def on_unsubscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        selectors, error = _selectors(data)
        if error:
            return {"ok": False, "error": error}
        await self.replayer.wait(sid)
        async with self.broadcaster.lock:
            current = self.broadcaster.subscription(sid) or Subscription.of(())
            subscription = current.minus(selectors)
            await self.broadcaster.place(sid, subscription)
            return self._answer(subscription)

    def _answer(self, subscription: Subscription) -> dict[str, Any]:
        return {
            "epoch": self.broadcaster.epoch,
            "seq": self.broadcaster.head,
            "devices": subscription.to_wire(),
        }


def _selectors(data: Any) -> tuple[list[str], str | None]:
    devices = data.get("devices") if isinstance(data, dict) else None
    if not isinstance(devices, list) or not devices:
        return [], 'expected {"devices": ["id", ...]} (["*"] for all)'
    if len(devices) > MAX_SELECTORS:
        return [], f"at most {MAX_SELECTORS} devices per call"
    for device in devices:
        if not isinstance(device, str) or not (device == ALL or is_valid_device_id(device)):
            return [], f"{str(device)[:80]!r} is not a device id"
    return devices, None
