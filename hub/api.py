"""The HTTP API: health, readiness, metrics, devices and their readings."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from quart import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from hub.auth import Authenticator
from hub.config import parse_duration
from hub.errors import AuthError, AuthFailure, ConfigError, QueryError, StoreClosed
from hub.metrics import Metrics
from hub.models import DeviceRecord, is_valid_device_id
from hub.presence import Presence
from hub.store.base import Store
from hub.store.device_pages import MAX_LIMIT as MAX_PAGE
from hub.store.device_pages import MAX_OFFSET, MAX_QUERY, STATUSES, DeviceQuery, Totals

DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000


def api(
    store: Store,
    presence: Presence,
    auth: Authenticator,
    metrics: Metrics,
    ingest_status: Callable[[], dict[str, Any]],
    info: dict[str, Any],
) -> Blueprint:
    blueprint = Blueprint("api", __name__)
    totals = Totals()

    @blueprint.app_errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> HTTPException | Response:
        """Every answer under /api is JSON, errors included (404, 405, 413, and
        500, whose exception Quart has logged and the client is not shown)."""
        if not request.path.startswith("/api/"):
            return error
        code = error.code or 500
        detail = "internal error" if code == 500 else (error.description or error.name)
        response = jsonify({"error": f"{error.name.lower()}: {detail}"})
        response.status_code = code
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @blueprint.get("/api/info")
    async def hub_info() -> Response:
        """What a dashboard needs to know about this hub before it connects."""
        return jsonify(
            {
                **info,
                "epoch": store.epoch,
                "head": store.head,
                "admin": auth.admin_enabled,
                "dashboard_token_required": auth.dashboard_token_required,
            }
        )

    @blueprint.get("/api/rejections")
    async def rejections() -> tuple[Response, int]:
        """The newest dead letters and the counts per reason (admins only)."""
        refused = _admin_refusal(auth)
        if refused is not None:
            return refused
        try:
            limit = _integer("limit")
        except QueryError as exc:
            return jsonify({"error": str(exc)}), 400
        rows = await store.rejections(min(max(limit or 50, 1), 1000))
        return jsonify(
            {"rejections": [r.to_wire() for r in rows], "counts": await store.rejection_counts()}
        ), 200

    @blueprint.get("/api/commands")
    async def commands() -> tuple[Response, int]:
        """The newest admin commands and how they ended (admins only)."""
        refused = _admin_refusal(auth)
        if refused is not None:
            return refused
        device_id = request.args.get("device_id") or None
        rows = await store.commands(device_id, 100)
        return jsonify({"commands": [r.to_wire() for r in rows]}), 200

    @blueprint.get("/healthz")
    async def healthz() -> Response:
        return jsonify({"ok": True})

    @blueprint.get("/readyz")
    async def readyz() -> tuple[Response, int]:
        status = ingest_status()
        # Ready while the store is open and commits succeed: a store refusing
        # writes holds every acknowledgement back, so say so.
        ready = bool(store.epoch) and not status["writer"]["failing"]
        body = {
            "ready": ready,
            "node": info["node"],
            "store": {"epoch": store.epoch, "head": store.head, **store.status()},
            "ingest": status,
        }
        return jsonify(body), 200 if ready else 503

    @blueprint.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), content_type="text/plain; version=0.0.4")

    @blueprint.get("/api/devices")
    async def devices() -> tuple[Response, int]:
        refused = _dashboard_refusal(auth)
        if refused is not None:
            return refused
        if "limit" in request.args:
            try:
                query = _device_query(info["stale_after_ms"])
            except QueryError as exc:
                return jsonify({"error": str(exc)}), 400
            query = totals.of(query)
            page = await store.device_page(query)
            totals.keep(query, page)
            body = {
                "devices": [_device(r, presence, auth) for r in page.records],
                "next": page.next,
                "total": page.total,
            }
            return jsonify(body), 200
        records = {record.device_id: record for record in await store.devices()}
        unseen = [DeviceRecord(d, 0, 0, False, (), ()) for d in auth.listed if d not in records]
        answer = [_device(r, presence, auth) for r in [*records.values(), *unseen]]
        answer.sort(key=lambda d: str(d["device_id"]))
        return jsonify({"devices": answer}), 200

    @blueprint.get("/api/devices/counts")
    async def device_counts() -> tuple[Response, int]:
        """How many devices by status (online, stale, offline) and by group,
        for a dashboard that shows one page of a large fleet."""
        refused = _dashboard_refusal(auth)
        if refused is not None:
            return refused
        stale_before = int(time.time() * 1000) - info["stale_after_ms"]
        counts = await store.device_counts(stale_before)
        return jsonify(counts.to_wire()), 200

    @blueprint.get("/api/devices/<device_id>")
    async def one_device(device_id: str) -> tuple[Response, int]:
        """One device as the list shows it (opening it needs no list)."""
        refused = _dashboard_refusal(auth)
        if refused is not None:
            return refused
        record = await store.device(device_id) if is_valid_device_id(device_id) else None
        if record is None:
            return jsonify({"error": f"no device {device_id[:80]!r}"}), 404
        return jsonify(_device(record, presence, auth)), 200

    @blueprint.app_errorhandler(StoreClosed)
    async def store_closed(error: StoreClosed) -> tuple[Response, int]:
        """Asked while the hub stops (a dashboard polling the counts): 503.
        Any other store failure is a 500, logged."""
        return jsonify({"error": "the hub is stopping: the store is closed"}), 503

    @blueprint.get("/api/devices/<device_id>/readings")
    async def readings(device_id: str) -> tuple[Response, int]:
        refused = _dashboard_refusal(auth)
        if refused is not None:
            return refused
        if not is_valid_device_id(device_id):
            return jsonify({"error": "invalid device id"}), 400
        try:
            metric = request.args.get("metric", "")
            if not metric:
                raise QueryError("metric", "", "required")
            start = _integer("from")
            end = _integer("to")
            limit = _integer("limit")
            limit = DEFAULT_LIMIT if limit is None else limit
            if not 1 <= limit <= MAX_LIMIT:
                raise QueryError("limit", str(limit), f"must be 1 to {MAX_LIMIT}")
            bucket = request.args.get("bucket")
            bucket_ms = _bucket(bucket) if bucket else None
        except QueryError as exc:
            return jsonify({"error": str(exc)}), 400
        body: dict[str, Any] = {
            "device_id": device_id,
            "metric": metric,
            "unit": await store.metric_unit(device_id, metric),
        }
        if bucket_ms is None:
            rows = await store.readings(device_id, metric, start, end, limit)
            body["readings"] = [r.to_wire() for r in rows]
        else:
            # Buckets carry no seqs: `through` says which readings they count,
            # so that a live view adds only the ones after it.
            through = store.head
            buckets = await store.buckets(
                device_id, metric, start, end, bucket_ms, limit, through=through
            )
            body["bucket"] = bucket
            body["buckets"] = [b.to_wire() for b in buckets]
            body["through"] = through
        return jsonify(body), 200

    return blueprint


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else ""


def _admin_refusal(auth: Authenticator) -> tuple[Response, int] | None:
    try:
        auth.check_admin(_bearer())
    except AuthError as exc:
        return jsonify({"error": exc.reason}), 403 if exc.kind is AuthFailure.CLOSED else 401
    return None


def _dashboard_refusal(auth: Authenticator) -> tuple[Response, int] | None:
    """What dashboards read over HTTP needs the dashboard token, as the
    `/dashboard` namespace does, when one is set."""
    try:
        auth.check_dashboard(_bearer())
    except AuthError as exc:
        return jsonify({"error": exc.reason}), 401
    return None


def _integer(name: str) -> int | None:
    text = request.args.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise QueryError(name, text, "must be an integer (epoch ms for from/to)") from None


def _bucket(text: str) -> int:
    try:
        seconds = parse_duration(text, "bucket")
    except ConfigError:
        raise QueryError("bucket", text, "must be a duration such as 10s, 1m, 1h, 1d") from None
    if seconds < 0.001:
        raise QueryError("bucket", text, "must be at least 1ms")
    return round(seconds * 1000)


def _device(record: DeviceRecord, presence: Presence, auth: Authenticator) -> dict[str, Any]:
    """A device as `/api/devices` shows it; one listed in `[[devices]]` but
    never heard from (first_seen 0) has no times."""
    heard = record.first_seen != 0
    return {
        "device_id": record.device_id,
        "online": heard and presence.is_online(record.device_id),
        "first_seen": record.first_seen if heard else None,
        "last_seen": record.last_seen if heard else None,
        "group": auth.groups.get(record.device_id) or _attribute(record, "group"),
        "metrics": {
            m.metric: {"unit": m.unit, "ts": m.ts, "value": m.value} for m in record.metrics
        },
        "attributes": {a.name: {"value": a.value, "ts": a.ts} for a in record.attributes},
    }


def _device_query(stale_after_ms: int) -> DeviceQuery:
    """`limit`, `after`, `q`, `group` and `status` of a device page."""
    limit = _integer("limit")
    if limit is None or not 1 <= limit <= MAX_PAGE:
        raise QueryError("limit", request.args.get("limit", ""), f"must be 1 to {MAX_PAGE}")
    offset = _integer("offset") or 0
    if not 0 <= offset <= MAX_OFFSET:
        raise QueryError("offset", str(offset), f"must be 0 to {MAX_OFFSET}")
    status = request.args.get("status", "")
    if status and status not in STATUSES:
        raise QueryError("status", status, "must be online, offline or stale")
    q = request.args.get("q", "").strip()
    if len(q) > MAX_QUERY:
        raise QueryError("q", q[:40], f"must be at most {MAX_QUERY} characters")
    return DeviceQuery(
        limit=limit,
        after=request.args.get("after", ""),
        q=q,
        group=request.args.get("group", ""),
        status=status,
        stale_before=int(time.time() * 1000) - stale_after_ms,
        offset=offset,
    )


def _attribute(record: DeviceRecord, name: str) -> str | None:
    """A device's attribute (a source's devices keep their group as one)."""
    return next((a.value for a in record.attributes if a.name == name), None)
