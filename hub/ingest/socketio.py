"""Socket.IO ingest: namespace `/devices`, event `telemetry`, acknowledged
after the commit with `{"ok": true, "accepted": N, "rejected": M}`.

A device connects with `auth = {"device_id": ..., "token": ...}`; its
connection is a presence link, so it is online exactly while connected. The
work is the ingest pipeline's; this turns its outcome into an acknowledgement.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
import socketio

from hub.errors import AuthError, HubClosing
from hub.ingest.pipeline import Pipeline
from hub.models import LinkEvent, Outcome, Refusal, Source, is_valid_device_id

log = logging.getLogger(__name__)

DEVICES = "/devices"


class DeviceNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    def __init__(self, pipeline: Pipeline):
        super().__init__(DEVICES)
        self.pipeline = pipeline
        self.writer = pipeline.writer
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
            self.pipeline.authenticate(device_id, token if isinstance(token, str) else "")
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
        outcome = await self.pipeline.submit(
            Source.SOCKETIO,
            device_id,
            _encoded(data),
            int(time.time() * 1000),
            data,
            parsed=True,
        )
        return _acknowledgement(outcome)

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


def _acknowledgement(outcome: Outcome) -> dict[str, Any]:
    if outcome.stored is not None:
        return outcome.stored.to_wire()
    match outcome.refusal:
        case Refusal.INVALID:
            return {
                "ok": False,
                "error": f"{outcome.reason}: {outcome.detail}",
                "accepted": 0,
                "rejected": outcome.rejected,
            }
        case Refusal.RATE_LIMITED:
            return {
                "ok": False,
                "error": f"rate_limited: {outcome.detail}",
                "retry": True,
                "retry_after": round(outcome.retry_after or 0, 3),
            }
        case Refusal.BUSY:
            return {
                "ok": False,
                "error": f"busy: {outcome.detail}, retry later",
                "retry": True,
                "retry_after": outcome.retry_after,
            }
        case Refusal.CLOSING:
            return {"ok": False, "error": "shutting down, retry later", "retry": True}
        case _:
            return {"ok": False, "error": f"{outcome.detail}, retry later", "retry": True}


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
