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
        # group -> its devices, from [[devices]] group = "..."
        self.members: dict[str, set[str]] = {}
        for device_id, group in auth.groups.items():
            self.members.setdefault(group, set()).add(device_id)

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
        selectors, error = _selectors(data, self.members)
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
        selectors, error = _selectors(data, self.members)
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


def _selectors(data: Any, members: dict[str, set[str]]) -> tuple[list[str], str | None]:
    """The device ids a `subscribe`/`unsubscribe` names: `devices` (`["*"]` for
    all) and the devices of `groups` (as listed in config)."""
    if not isinstance(data, dict):
        return [], 'expected {"devices": ["id", ...]} (["*"] for all) and/or {"groups": [...]}'
    devices, groups = data.get("devices", []), data.get("groups", [])
    if not isinstance(devices, list) or not isinstance(groups, list) or not (devices or groups):
        return [], 'expected {"devices": ["id", ...]} (["*"] for all) and/or {"groups": [...]}'
    if len(devices) + len(groups) > MAX_SELECTORS:
        return [], f"at most {MAX_SELECTORS} devices and groups per call"
    for device in devices:
        if not isinstance(device, str) or not (device == ALL or is_valid_device_id(device)):
            return [], f"{str(device)[:80]!r} is not a device id"
    selected = list(devices)
    for group in groups:
        if not isinstance(group, str) or group not in members:
            return [], f"{str(group)[:80]!r} is not a group of any listed device"
        selected.extend(sorted(members[group]))
    return selected, None
