"""Who may connect: devices by their token, dashboards and admins by theirs.

Tokens are compared as SHA-256 digests with `hmac.compare_digest`, so the
comparison takes the same time whatever the guess, and a device's secret can
be configured as its hash (`token_sha256`) or kept in a file (`token_file`).
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from hub.config import AuthSettings, DeviceSettings
from hub.errors import AuthError, AuthFailure


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Authenticator:
    def __init__(self, auth: AuthSettings, devices: tuple[DeviceSettings, ...]):
        self._dashboard = digest(auth.dashboard_token) if auth.dashboard_token else None
        self._admin = digest(auth.admin_token) if auth.admin_token else None
        # Each listed device's entry, its token's digest made when asked: a
        # digest kept for each of 100,000 devices would cost 65 bytes apiece
        # beside the entry the settings keep anyway. A token in a file is
        # read once, at startup, and its digest kept.
        self._listed: dict[str, DeviceSettings] = {}
        self._from_files: dict[str, bytes] = {}
        self.groups: dict[str, str] = {}
        self.members: dict[str, set[str]] = {}  # group -> its devices
        for device in devices:
            self._listed[device.id] = device
            if device.token_file:
                token = Path(device.token_file).read_text(encoding="utf-8").strip()
                self._from_files[device.id] = digest(token)
            if device.group:
                self.join_group(device.id, device.group)
        enroll = auth.enroll
        if enroll == "auto":
            tokens = any(d.token or d.token_sha256 or d.token_file for d in devices)
            enroll = "listed" if tokens else "open"
        self.enroll = enroll

    def join_group(self, device_id: str, group: str) -> None:
        """Put a device in a group, unless it is in one already (a group
        given in [[devices]] stays)."""
        if device_id not in self.groups:
            self.groups[device_id] = group
            self.members.setdefault(group, set()).add(device_id)

    @property
    def listed(self) -> tuple[str, ...]:
        return tuple(self._listed)

    def device_allowed(self, device_id: str) -> bool:
        """Whether data from this device is accepted at all (listed enrollment)."""
        return self.enroll == "open" or device_id in self._listed

    def check_device(self, device_id: str, token: str) -> None:
        if not self.device_allowed(device_id):
            raise AuthError(
                f"device {device_id}", AuthFailure.NOT_LISTED, "not listed in [[devices]]"
            )
        expected = self._expected(device_id)
        if expected is not None and not hmac.compare_digest(expected, digest(token or "")):
            raise AuthError(
                f"device {device_id}", AuthFailure.WRONG_TOKEN, "wrong or missing token"
            )

    def _expected(self, device_id: str) -> bytes | None:
        """The digest of a listed device's token; None when it has none."""
        device = self._listed.get(device_id)
        if device is None:
            return None
        if device.token:
            return digest(device.token)
        if device.token_sha256:
            return bytes.fromhex(device.token_sha256)
        return self._from_files.get(device_id)

    def check_dashboard(self, token: str) -> None:
        if self._dashboard is not None and not hmac.compare_digest(
            self._dashboard, digest(token or "")
        ):
            raise AuthError("dashboard", AuthFailure.WRONG_TOKEN, "wrong or missing token")

    @property
    def admin_enabled(self) -> bool:
        return self._admin is not None

    @property
    def dashboard_token_required(self) -> bool:
        return self._dashboard is not None

    def check_admin(self, token: str) -> None:
        if self._admin is None:
            raise AuthError(
                "admin", AuthFailure.CLOSED, "closed: no auth.admin_token is configured"
            )
        if not hmac.compare_digest(self._admin, digest(token or "")):
            raise AuthError("admin", AuthFailure.WRONG_TOKEN, "wrong or missing token")
