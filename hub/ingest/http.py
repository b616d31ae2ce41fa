"""HTTP ingest: `POST /api/devices/{id}/telemetry` with `Authorization: Bearer
<device token>`; 202 with the counts once stored, 4xx with a JSON error. The
work is the ingest pipeline's; this turns its outcome into an HTTP answer."""

from __future__ import annotations

import math
import time

from quart import Blueprint, Response, jsonify, request

from hub.errors import AuthError, AuthFailure
from hub.ingest.pipeline import Pipeline
from hub.models import Outcome, Refusal, RejectReason, Source, is_valid_device_id

ResponseWithStatus = tuple[Response, int] | tuple[Response, int, dict[str, str]]


def http_ingest(pipeline: Pipeline) -> Blueprint:
    blueprint = Blueprint("ingest", __name__)
    max_bytes = pipeline.rules.max_payload_bytes

    @blueprint.post("/api/devices/<device_id>/telemetry")
    async def telemetry(device_id: str) -> ResponseWithStatus:
        if not is_valid_device_id(device_id):
            return _error(
                400, RejectReason.INVALID_DEVICE_ID, "device id must be 1-64 of A-Z a-z 0-9 _ . -"
            )
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        try:
            pipeline.authenticate(device_id, token)
        except AuthError as exc:
            status = 403 if exc.kind is AuthFailure.NOT_LISTED else 401
            return _error(status, "unauthorized", exc.reason)
        length = request.content_length
        if length is not None and length > max_bytes:
            return _error(
                413,
                RejectReason.PAYLOAD_TOO_LARGE,
                f"{length} bytes exceeds the limit of {max_bytes}",
            )
        raw = await request.get_data(cache=False, as_text=False, parse_form_data=False)
        outcome = await pipeline.submit(Source.HTTP, device_id, raw, int(time.time() * 1000))
        return _answer(outcome)

    return blueprint


def _answer(outcome: Outcome) -> ResponseWithStatus:
    if outcome.stored is not None:
        return jsonify(outcome.stored.to_wire()), 202
    retry_after = max(1, math.ceil(outcome.retry_after or 0))
    match outcome.refusal:
        case Refusal.INVALID:
            status = 413 if outcome.reason == RejectReason.PAYLOAD_TOO_LARGE else 400
            return _error(status, outcome.reason, outcome.detail)
        case Refusal.RATE_LIMITED:
            return _error(429, RejectReason.RATE_LIMITED, outcome.detail, retry_after)
        case Refusal.BUSY:
            retry_after = max(1, round(outcome.retry_after or 0))
            return _error(503, "busy", f"{outcome.detail}, retry later", retry_after)
        case Refusal.CLOSING:
            return _error(503, "unavailable", outcome.detail, retry_after)
        case _:
            return _error(503, "unavailable", f"{outcome.detail}, retry later", retry_after)


def _error(
    status: int, code: str, detail: str, retry_after: int | None = None
) -> ResponseWithStatus:
    body = jsonify({"ok": False, "error": f"{code}: {detail}", "reason": str(code)})
    if retry_after is not None:
        return body, status, {"Retry-After": str(retry_after)}
    return body, status
