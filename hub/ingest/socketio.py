"""Socket.IO ingest: namespace `/devices`, event `telemetry`, acknowledged
after the commit with `{"ok": true, "accepted": N, "rejected": M}`.

A device connects with `auth = {"device_id": ..., "token": ...}`; its
connection is a presence link, so it is online exactly while connected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
import socketio

from hub.auth import Authenticator
from hub.errors import AuthError, HubBusy, HubClosing, StoreError
from hub.limits import RateLimiter
from hub.metrics import Metrics
from hub.models import Source, is_valid_device_id
from hub.normalize import Rules, normalize_document, rate_limited
from hub.writer import LinkEvent, Writer

log = logging.getLogger(__name__)

DEVICES = "/devices"


class DeviceNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    def __init__(
        self,
        writer: Writer,
        rules: Rules,
        auth: Authenticator,
        metrics: Metrics,
        limiter: RateLimiter,
        ack_timeout: float = 10.0,
    ):
        super().__init__(DEVICES)
        self.writer = writer
        self.rules = rules
        self.auth = auth
        self.metrics = metrics
        self.limiter = limiter
        self.ack_timeout = ack_timeout
        self._device_of: dict[str, str] = {}
        self._sid_of: dict[str, str] = {}
        self._links: set[asyncio.Task[None]] = set()

    def sid_of(self, device_id: str) -> str | None:
        """The Socket.IO session of a connected device (its latest connection)."""
        return self._sid_of.get(device_id)

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        device_id = auth.get("device_id") if isinstance(auth, dict) else None
        token = auth.get("token", "") if isinstance(auth, dict) else ""
        if not isinstance(device_id, str) or not is_valid_device_id(device_id):
            raise socketio.exceptions.ConnectionRefusedError(
                "auth.device_id must be 1-64 of A-Z a-z 0-9 _ . -"
            )
        try:
            self.auth.check_device(device_id, token if isinstance(token, str) else "")
        except AuthError as exc:
            raise socketio.exceptions.ConnectionRefusedError(exc.reason) from None
        self._device_of[sid] = device_id
        self._sid_of[device_id] = sid  # the latest connection carries commands
        await self._link(device_id, sid, up=True)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        device_id = self._device_of.pop(sid, None)
        if device_id is not None and self._sid_of.get(device_id) == sid:
            del self._sid_of[device_id]
        if device_id is not None:
            await self._link(device_id, sid, up=False)

    async def on_telemetry(self, sid: str, data: Any = None) -> dict[str, Any]:
        device_id = self._device_of.get(sid)
        if device_id is None:
            return {"ok": False, "error": "not connected as a device"}
        received_ms = int(time.time() * 1000)
        raw = _encoded(data)
        self.metrics.inc("hub_messages_received_total", source="socketio")
        if wait := self.limiter.allow(device_id):
            refused = rate_limited(
                raw, device_id=device_id, source=Source.SOCKETIO, received_ms=received_ms, wait=wait
            )
            self.writer.record_rejected(Source.SOCKETIO, received_ms, refused)
            return {
                "ok": False,
                "error": f"rate_limited: {refused.rejections[0].detail}",
                "retry": True,
                "retry_after": round(wait, 3),
            }
        normalized = normalize_document(
            data,
            raw=raw,
            device_id=device_id,
            source=Source.SOCKETIO,
            received_ms=received_ms,
            rules=self.rules,
        )
        try:
            accepted = await self.writer.submit(
                Source.SOCKETIO,
                received_ms,
                [normalized],
                seen=[device_id],
                wait=False,
                within=self.ack_timeout,
            )
        except HubBusy as exc:
            return {
                "ok": False,
                "error": f"busy: {exc.reason}, retry later",
                "retry": True,
                "retry_after": exc.retry_after,
            }
        except HubClosing:
            return {"ok": False, "error": "shutting down, retry later", "retry": True}
        except StoreError as exc:
            log.error("telemetry from %s not stored: %s", device_id, exc)
            return {"ok": False, "error": "not stored, retry later", "retry": True}
        if normalized.rejections and not normalized.readings and not normalized.attributes:
            first = normalized.rejections[0]
            return {
                "ok": False,
                "error": f"{first.reason}: {first.detail}",
                "accepted": 0,
                "rejected": accepted.rejected,
            }
        return accepted.to_wire()

    async def _link(self, device_id: str, sid: str, *, up: bool) -> None:
        """Record the link change without waiting for its commit: a connect
        must not hang on a store that is behind or failing."""
        event = LinkEvent(device_id, f"socketio:{sid}", up)
        task = asyncio.create_task(self._enqueue_link(event), name=f"link-{sid}")
        self._links.add(task)
        task.add_done_callback(self._links.discard)

    async def _enqueue_link(self, event: LinkEvent) -> None:
        try:
            await self.writer.enqueue(Source.SOCKETIO, int(time.time() * 1000), [], links=[event])
        except HubClosing as exc:
            log.warning("presence of %s not recorded: %s", event.device_id, exc)


def _encoded(data: Any) -> bytes:
    """The payload as JSON bytes, for the size limit and dead-letter excerpts."""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    try:
        return orjson.dumps(data)
    except TypeError:  # an integer beyond 64 bits, say: the normalizer says why
        return repr(data).encode()
