"""The `/dashboard` namespace: dashboards subscribe to devices and receive
`readings` frames and `presence` changes.

`subscribe` adds to what the client already has, `unsubscribe` takes away;
both answer `{"epoch", "seq": HEAD, "devices": [...]}`, where HEAD is the
last seq before the first one the client will receive live. The first
`subscribe` of a client that connected with a cursor starts its replay
(`hub.live`, `hub.replay`); later calls wait until that replay is over.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio

from hub.auth import Authenticator
from hub.errors import AuthError
from hub.live import ALL, Live, Subscription
from hub.models import is_valid_device_id
from hub.replay import Cursor
from hub.wire import DASHBOARD

log = logging.getLogger(__name__)

MAX_SELECTORS = 1000


class DashboardNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    def __init__(self, live: Live, auth: Authenticator):
        super().__init__(DASHBOARD)
        self.live = live
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
        await self.live.drop(sid)

    async def on_subscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        selectors, error = _selectors(data, self.auth.members)
        if error:
            return {"ok": False, "error": error}
        cursor = self.cursors.pop(sid, None)
        subscription, head = await self.live.subscribe(sid, Subscription.of(selectors), cursor)
        return self._answer(subscription, head)

    async def on_unsubscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        selectors, error = _selectors(data, self.auth.members)
        if error:
            return {"ok": False, "error": error}
        subscription, head = await self.live.unsubscribe(sid, selectors)
        return self._answer(subscription, head)

    def _answer(self, subscription: Subscription, head: int) -> dict[str, Any]:
        return {"epoch": self.live.epoch, "seq": head, "devices": subscription.to_wire()}


def _selectors(data: Any, members: dict[str, set[str]]) -> tuple[list[str], str | None]:
    """The device ids a `subscribe`/`unsubscribe` names: `devices` (`["*"]` for
    all) and the devices of `groups` (from [[devices]] and [[mqtt.sources]])."""
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
