"""The `/admin` namespace: closed unless `auth.admin_token` is set, and then
only to clients presenting it. Admins send commands to devices."""

from __future__ import annotations

from typing import Any

import socketio

from hub.auth import Authenticator
from hub.commands import Commands
from hub.errors import AuthError
from hub.models import is_valid_device_id

ADMIN = "/admin"
MAX_NAME = 64


class AdminNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    def __init__(self, commands: Commands, auth: Authenticator):
        super().__init__(ADMIN)
        self.commands = commands
        self.auth = auth

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        token = auth.get("token", "") if isinstance(auth, dict) else ""
        try:
            self.auth.check_admin(token if isinstance(token, str) else "")
        except AuthError as exc:
            raise socketio.exceptions.ConnectionRefusedError(exc.reason) from None

    async def on_command(self, sid: str, data: Any = None) -> dict[str, Any]:
        """`{"device_id", "name", "args", "timeout_ms"}` -> the device's reply,
        or `{"ok": false, "error": ...}`."""
        if not isinstance(data, dict):
            return {"ok": False, "error": 'expected {"device_id", "name", "args", "timeout_ms"}'}
        device_id, name = data.get("device_id"), data.get("name")
        args = data.get("args", {})
        if not isinstance(device_id, str) or not is_valid_device_id(device_id):
            return {"ok": False, "error": "device_id must be 1-64 of A-Z a-z 0-9 _ . -"}
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
            return {"ok": False, "error": f"name must be a string of 1-{MAX_NAME} characters"}
        if not isinstance(args, dict):
            return {"ok": False, "error": "args must be an object"}
        timeout = self.commands.timeout_of(data.get("timeout_ms"))
        return await self.commands.send(device_id, name, args, timeout)
