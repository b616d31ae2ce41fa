"""HTTP ingest: `POST /api/devices/{id}/telemetry` with `Authorization: Bearer
<device token>`; 202 with the counts once stored, 4xx with a JSON error."""

from __future__ import annotations

import logging
import math
import time

from quart import Blueprint, Response, jsonify, request

from hub.auth import Authenticator
from hub.errors import AuthError, HubBusy, HubClosing, StoreError
from hub.limits import RateLimiter
from hub.metrics import Metrics
from hub.models import RejectReason, Source, is_valid_device_id
from hub.normalize import Rules, normalize, rate_limited
from hub.writer import Writer

log = logging.getLogger(__name__)

ResponseWithStatus = tuple[Response, int] | tuple[Response, int, dict[str, str]]


def http_ingest(
    writer: Writer,
    rules: Rules,
    auth: Authenticator,
    metrics: Metrics,
    limiter: RateLimiter,
    ack_timeout: float,
) -> Blueprint:
    blueprint = Blueprint("ingest", __name__)

    @blueprint.post("/api/devices/<device_id>/telemetry")
    async def telemetry(device_id: str) -> ResponseWithStatus:
        if not is_valid_device_id(device_id):
            return _error(
                400, RejectReason.INVALID_DEVICE_ID, "device id must be 1-64 of A-Z a-z 0-9 _ . -"
            )
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        try:
            auth.check_device(device_id, token)
        except AuthError as exc:
            status = 403 if "not listed" in exc.reason else 401
            return _error(status, "unauthorized", exc.reason)
        length = request.content_length
        if length is not None and length > rules.max_payload_bytes:
            return _error(
                413,
                RejectReason.PAYLOAD_TOO_LARGE,
                f"{length} bytes exceeds the limit of {rules.max_payload_bytes}",
            )
        raw = await request.get_data(cache=False, as_text=False, parse_form_data=False)
        received_ms = int(time.time() * 1000)
        metrics.inc("hub_messages_received_total", source="http")
        if wait := limiter.allow(device_id):
            refused = rate_limited(
                raw, device_id=device_id, source=Source.HTTP, received_ms=received_ms, wait=wait
            )
            writer.record_rejected(Source.HTTP, received_ms, refused)
            return _error(
                429,
                RejectReason.RATE_LIMITED,
                refused.rejections[0].detail,
                retry_after=max(1, math.ceil(wait)),
            )
        normalized = normalize(
            raw, device_id=device_id, source=Source.HTTP, received_ms=received_ms, rules=rules
        )
        try:
            accepted = await writer.submit(
                Source.HTTP,
                received_ms,
                [normalized],
                seen=[device_id],
                wait=False,
                within=ack_timeout,
            )
        except HubBusy as exc:
            return _error(
                503,
                "busy",
                f"{exc.reason}, retry later",
                retry_after=max(1, round(exc.retry_after)),
            )
        except HubClosing:
            return _error(503, "unavailable", "the hub is shutting down", retry_after=5)
        except StoreError:
            return _error(503, "unavailable", "not stored, retry later", retry_after=1)
        if normalized.rejections and not normalized.readings and not normalized.attributes:
            first = normalized.rejections[0]
            status = 413 if first.reason is RejectReason.PAYLOAD_TOO_LARGE else 400
            return _error(status, first.reason, first.detail)
        return jsonify(accepted.to_wire()), 202

    return blueprint


def _error(
    status: int, code: str, detail: str, retry_after: int | None = None
) -> ResponseWithStatus:
    body = jsonify({"ok": False, "error": f"{code}: {detail}", "reason": str(code)})
    if retry_after is not None:
        return body, status, {"Retry-After": str(retry_after)}
    return body, status
