"""One ingest pipeline for every transport: authenticate, rate limit,
normalize, submit, and the outcome.

The adapters only translate: HTTP (`hub/ingest/http.py`) and Socket.IO
(`hub/ingest/socketio.py`) hand it one message and turn its `Outcome` into
a status code or an acknowledgement; MQTT (`hub/ingest/mqtt.py`) prepares
each message of a batch here and submits the batch, acknowledging it to the
broker once committed. A refused message is never lost quietly: it goes to
the dead letters with its reason, and the device is told whether to retry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

from hub.auth import Authenticator
from hub.errors import HubBusy, HubClosing, StoreError
from hub.limits import RateLimiter
from hub.metrics import Metrics
from hub.models import Normalized, Outcome, Refusal, RejectReason, Source, is_valid_device_id
from hub.normalize import NO_UNITS, Rules, normalize, normalize_document, rate_limited, rejected
from hub.sources.names import NATIVE, DeviceNames
from hub.writer import Writer

log = logging.getLogger(__name__)

CLOSING_RETRY_AFTER = 5.0  # seconds a device is told to wait while the hub shuts down
FAILED_RETRY_AFTER = 1.0  # ... after a commit failed


class Prepared(NamedTuple):
    """A message made ready to submit: what to submit, whether its device was
    admitted (allowed, within its rate, a valid id: it counts as heard from),
    and, when over its rate, the seconds until it has room again."""

    normalized: Normalized
    admitted: bool
    wait: float = 0.0


class Pipeline:
    """Authenticate -> rate limit -> normalize -> submit -> outcome."""

    def __init__(
        self,
        writer: Writer,
        rules: Rules,
        auth: Authenticator,
        limiter: RateLimiter,
        metrics: Metrics,
        ack_timeout: float,
        names: DeviceNames | None = None,
    ):
        self.names = DeviceNames() if names is None else names
        self.writer = writer
        self.rules = rules
        self.auth = auth
        self.limiter = limiter
        self.metrics = metrics
        self.ack_timeout = ack_timeout

    def authenticate(self, device_id: str, token: str) -> None:
        """A device that presents a token (HTTP, Socket.IO); raises `AuthError`."""
        self.auth.check_device(device_id, token)

    def prepare(
        self,
        source: Source,
        device_id: str,
        raw: bytes,
        received_ms: int,
        document: Any = None,
        *,
        parsed: bool = False,
        units: Mapping[str, str] = NO_UNITS,
        pack: bool = False,
        origin: tuple[str, str] | None = None,
    ) -> Prepared:
        """Rate limit and normalize one message. Over its device's rate, or
        from a device not allowed at all (listed enrollment; on MQTT the
        broker authenticated it), or under an id another source holds, it
        becomes a dead letter with that reason. `document` is the message
        already parsed, when `parsed` (Socket.IO, a source). `origin`: the
        source's label and its name for the device (None: the native
        topics, HTTP and Socket.IO); `units` and `pack` as for `normalize`."""
        valid = is_valid_device_id(device_id)
        if valid:
            label, name = origin or (NATIVE, device_id)
            holder = self.names.claim(device_id, label, name)
            if holder is not None:
                shown = "the native topics" if label == NATIVE else f"{label} {name!r}"
                detail = f"device id {device_id!r} from {shown} is held by {holder}"
                return _refused(
                    source, device_id, raw, received_ms, RejectReason.DEVICE_ID_CONFLICT, detail
                )
        if valid and not self.auth.device_allowed(device_id):
            detail = "not listed in [[devices]] and enrollment is not open"
            return _refused(
                source, device_id, raw, received_ms, RejectReason.UNKNOWN_DEVICE, detail
            )
        if valid and (wait := self.limiter.allow(device_id)):
            limited = rate_limited(
                raw, device_id=device_id, source=source, received_ms=received_ms, wait=wait
            )
            return Prepared(limited, admitted=False, wait=wait)
        if parsed:
            normalized = normalize_document(
                document,
                raw=raw,
                device_id=device_id,
                source=source,
                received_ms=received_ms,
                rules=self.rules,
                units=units,
                pack=pack,
            )
        else:
            normalized = normalize(
                raw,
                device_id=device_id,
                source=source,
                received_ms=received_ms,
                rules=self.rules,
                units=units,
                pack=pack,
            )
        return Prepared(normalized, admitted=valid)

    async def submit(
        self,
        source: Source,
        device_id: str,
        raw: bytes,
        received_ms: int,
        document: Any = None,
        *,
        parsed: bool = False,
    ) -> Outcome:
        """One message of an authenticated device that waits for its answer:
        stored once committed, or refused at once (rate limit, a store that is
        behind or cannot write, shutdown) or when not committed within the
        ack timeout."""
        self.metrics.inc("hub_messages_received_total", source=str(source))
        normalized, _, wait = self.prepare(
            source, device_id, raw, received_ms, document, parsed=parsed
        )
        if wait:
            self.writer.record_rejected(source, received_ms, normalized)
            return Outcome(
                refusal=Refusal.RATE_LIMITED,
                reason=str(RejectReason.RATE_LIMITED),
                detail=normalized.rejections[0].detail,
                retry_after=wait,
            )
        try:
            accepted = await self.writer.submit(
                source,
                received_ms,
                [normalized],
                seen=[device_id],
                wait=False,
                within=self.ack_timeout,
            )
        except HubBusy as exc:
            return Outcome(refusal=Refusal.BUSY, detail=exc.reason, retry_after=exc.retry_after)
        except HubClosing:
            return Outcome(
                refusal=Refusal.CLOSING,
                detail="the hub is shutting down",
                retry_after=CLOSING_RETRY_AFTER,
            )
        except StoreError as exc:
            log.error("telemetry from %s not stored: %s", device_id, exc)
            return Outcome(
                refusal=Refusal.UNAVAILABLE, detail="not stored", retry_after=FAILED_RETRY_AFTER
            )
        if normalized.rejections and not normalized.readings and not normalized.attributes:
            first = normalized.rejections[0]
            return Outcome(
                refusal=Refusal.INVALID,
                reason=str(first.reason),
                detail=first.detail,
                rejected=accepted.rejected,
            )
        return Outcome(stored=accepted)


def _refused(
    source: Source, device_id: str, raw: bytes, received_ms: int, reason: RejectReason, detail: str
) -> Prepared:
    """A message refused before normalizing, as its dead letter."""
    refused = rejected(
        raw,
        device_id=device_id,
        source=source,
        received_ms=received_ms,
        reason=reason,
        detail=detail,
    )
    return Prepared(refused, admitted=False)
